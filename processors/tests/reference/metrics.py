#!/usr/bin/env python3
"""Independent reference of the Flightline flight rule (CONTRACT.md §3) and analytics (§4).

Written the way an acceptance checker would: straightforward numpy/pandas over one recorded
packet stream, sharing no code with the Rust implementation. `tests/recorded_flights.rs` runs it
on every recorded flight and compares its output with the sessionizer machine and the polars
metrics.

    python3 metrics.py FILE.jsonl[.gz] [--drone-id UUID] [--threshold 0.05] [--idle-window 10]
                       [--gap 10] [--min-duration 1]

Prints one JSON object: {"drone_id", "flights": [{"flight_id", "start_ts_us", "end_ts_us",
"packet_count", "metrics": {...}}]}. The stream is one drone; the flight still open at the end is
closed at its last packet, as for a drone that went silent.
"""

import argparse
import datetime as dt
import gzip
import json
import math
import uuid

import numpy as np
import pandas as pd

NAMESPACE = uuid.UUID("6f1c5a52-7a1e-4c63-9d7c-2b0e5d1f8a90")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
EARTH_RADIUS_M = 6_371_008.8
ANALYTICS_VERSION = 1


def parse_ts_us(value):
    if isinstance(value, int):  # epoch milliseconds
        return value * 1000
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (parsed - EPOCH) // dt.timedelta(microseconds=1)


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            p = json.loads(line)
            pos = p.get("position") or [None] * 3
            gps = p.get("gps") or {}
            vel = p.get("velocity") or [None] * 3
            att = p.get("attitude") or [None] * 3
            rows.append({
                "ts": parse_ts_us(p["ts"]), "throttle": p["throttle"],
                "voltage": p.get("voltage"), "current": p.get("current"),
                "mah_drawn": p.get("mah_drawn"),
                "x": pos[0], "y": pos[1], "z": pos[2],
                "lat": gps.get("lat"), "lon": gps.get("lon"), "alt_m": gps.get("alt_m"),
                "vx": vel[0], "vy": vel[1], "vz": vel[2],
                "roll": att[0], "pitch": att[1], "yaw": att[2],
            })
    df = pd.DataFrame(rows)
    for c in ["throttle", "voltage", "current", "x", "y", "z", "lat", "lon", "alt_m",
              "vx", "vy", "vz", "roll", "pitch", "yaw"]:
        df[c] = df[c].astype("float64")  # missing -> NaN
    df["mah_drawn"] = df["mah_drawn"].astype("Int64")
    df["ts"] = df["ts"].astype("int64")
    return df


def flight_id(drone_id, start_us):
    start = EPOCH + dt.timedelta(microseconds=int(start_us))
    text = f"{str(drone_id).lower()}/{start.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
    return str(uuid.uuid5(NAMESPACE, text))


def sessionize(ts, throttle, T, W, G, min_dur):
    """CONTRACT §3 for one drone; returns [(start_us, end_us)]."""
    flights = []
    start = None
    idle_start = None
    prev = None

    def close(end):
        if end - start >= min_dur:
            flights.append((start, end))

    for t, thr in zip(ts, throttle):
        if prev is not None and t <= prev:
            continue  # duplicate / old
        if start is not None and prev is not None and t - prev > G:
            close(prev)
            start = None
        prev = t
        if start is None:
            if thr >= T:
                start, idle_start = t, None
            continue
        if thr >= T:
            idle_start = None
            continue
        if idle_start is None:
            idle_start = t
        if t - idle_start >= W:
            close(t)
            start = None
    if start is not None:
        close(prev)
    return flights


def num(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def trapezoid(v, dt_s):
    """(integral, summed dt) over pairs present in both rows, or (None, None)."""
    ok = ~np.isnan(v[:-1]) & ~np.isnan(v[1:])
    if not ok.any():
        return None, None
    return np.sum(0.5 * (v[:-1][ok] + v[1:][ok]) * dt_s[ok]), np.sum(dt_s[ok])


def rate_p95(values, ts):
    ok = ~np.isnan(values)
    v, t = values[ok], ts[ok]
    if len(v) < 2:
        return None
    rates = np.abs(np.diff(v) / (np.diff(t) / 1e6))
    return np.quantile(rates, 0.95)


def std1(values):
    v = values[~np.isnan(values)]
    return np.std(v, ddof=1) if len(v) >= 2 else None


def compute(f, start, end, T):
    ts = f["ts"].to_numpy()
    thr = f["throttle"].to_numpy()
    V = f["voltage"].to_numpy()
    I = f["current"].to_numpy()
    n = len(f)
    dt_s = np.diff(ts) / 1e6
    duration_s = (end - start) / 1e6
    m = {"duration_s": duration_s, "packet_count": n}

    area_i, secs_i = trapezoid(I, dt_s)
    m["total_mah"] = None if area_i is None else area_i / 3.6
    mah = f["mah_drawn"].dropna()
    m["mah_drawn_delta"] = int(mah.iloc[-1] - mah.iloc[0]) if len(mah) else None
    area_p, _ = trapezoid(V * I, dt_s)
    m["energy_wh"] = None if area_p is None else area_p / 3600
    m["min_voltage"] = np.nanmin(V) if (~np.isnan(V)).any() else None
    m["max_voltage"] = np.nanmax(V) if (~np.isnan(V)).any() else None
    m["max_current"] = np.nanmax(I) if (~np.isnan(I)).any() else None
    m["avg_current"] = None if area_i is None else area_i / secs_i

    xyz = f[["x", "y", "z"]].to_numpy()
    has_pos = ~np.isnan(xyz).any(axis=1)
    gps = f[["lat", "lon", "alt_m"]].to_numpy()
    has_gps = ~np.isnan(gps).any(axis=1)
    if has_pos.any():
        p = xyz[has_pos]
        m["distance_m"] = np.sum(np.sqrt(np.sum(np.diff(p, axis=0) ** 2, axis=1))) if len(p) >= 2 else None
        m["max_altitude_m"] = np.max(p[:, 2])
    else:
        g = gps[has_gps]
        if len(g) >= 2:
            lat = np.radians(g[:, 0])
            lon = np.radians(g[:, 1])
            a = (np.sin(np.diff(lat) / 2) ** 2
                 + np.cos(lat[:-1]) * np.cos(lat[1:]) * np.sin(np.diff(lon) / 2) ** 2)
            h = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(a))
            m["distance_m"] = np.sum(np.sqrt(h ** 2 + np.diff(g[:, 2]) ** 2))
        else:
            m["distance_m"] = None
        m["max_altitude_m"] = (np.max(g[:, 2]) - g[0, 2]) if len(g) else None
    d = m["distance_m"]
    e = m["energy_wh"]
    m["wh_per_km"] = e / (d / 1000) if (d is not None and e is not None and d >= 10) else None

    speed = np.sqrt(f["vx"].to_numpy() ** 2 + f["vy"].to_numpy() ** 2 + f["vz"].to_numpy() ** 2)
    m["max_speed_mps"] = np.nanmax(speed) if (~np.isnan(speed)).any() else None

    roll, pitch, yaw = (f[c].to_numpy() for c in ("roll", "pitch", "yaw"))
    yaw_ok = ~np.isnan(yaw)
    yaw_unwrapped = np.full_like(yaw, np.nan)
    yaw_unwrapped[yaw_ok] = np.unwrap(yaw[yaw_ok], period=360)
    m["attitude_std_deg"] = {"roll": std1(roll), "pitch": std1(pitch), "yaw": std1(yaw_unwrapped)}

    area_t, secs_t = trapezoid(thr, dt_s)
    m["throttle_mean"] = None if area_t is None else area_t / secs_t
    m["throttle_smoothness"] = np.mean(np.abs(np.diff(thr) / dt_s)) if n >= 2 else None
    hover = (speed < 0.5) & (thr >= T)  # NaN speed compares False
    m["hover_throttle"] = np.median(thr[hover]) if hover.any() else None

    both = ~np.isnan(V) & ~np.isnan(I)
    if both.any():
        Vb, Ib = V[both], I[both]
        p10, p90 = np.quantile(Ib, 0.1), np.quantile(Ib, 0.9)
        m["voltage_sag_v"] = np.median(Vb[Ib <= p10]) - np.median(Vb[Ib >= p90])
        if len(Ib) >= 20 and Ib.max() - Ib.min() >= 1.0:
            m["internal_resistance_mohm"] = -1000 * np.polyfit(Ib, Vb, 1)[0]
        else:
            m["internal_resistance_mohm"] = None
    else:
        m["voltage_sag_v"] = None
        m["internal_resistance_mohm"] = None

    bins = np.digitize(thr, np.arange(1, 10) / 10)  # k/10 <= t < (k+1)/10; 1.0 -> 9
    seconds = np.append(dt_s, 0.0)
    pc = pd.DataFrame({"bin": bins, "power": V * I, "current": I, "seconds": seconds})
    curve = []
    for k, g in pc.groupby("bin", sort=True):
        curve.append({
            "bin_start": k / 10,
            "mean_power_w": num(g["power"].mean()) if g["power"].notna().any() else None,
            "mean_current_a": num(g["current"].mean()) if g["current"].notna().any() else None,
            "seconds": float(g["seconds"].sum()),
        })
    m["power_curve"] = curve

    steps = np.diff(thr)
    signs = np.sign(steps[steps != 0])
    reversals = int(np.count_nonzero(signs[1:] != signs[:-1]))
    m["pilot_fingerprint"] = {
        "throttle_p10": np.quantile(thr, 0.1),
        "throttle_p50": np.quantile(thr, 0.5),
        "throttle_p90": np.quantile(thr, 0.9),
        "roll_rate_p95_dps": rate_p95(roll, ts),
        "pitch_rate_p95_dps": rate_p95(pitch, ts),
        "yaw_rate_p95_dps": rate_p95(yaw_unwrapped, ts),
        "throttle_reversals_per_min":
            reversals / (duration_s / 60) if n >= 2 and duration_s > 0 else None,
    }
    gap = np.diff(ts) > 1_000_000
    m["gaps"] = {"count": int(gap.sum()), "seconds": float(dt_s[gap].sum())}
    m["analytics_version"] = ANALYTICS_VERSION
    return clean(m)


def clean(value):
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, (np.integer,)):
        return int(value)
    return num(value)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--drone-id", default="00000000-0000-4000-8000-000000000001")
    ap.add_argument("--threshold", type=float, default=0.05)
    ap.add_argument("--idle-window", type=float, default=10.0, help="seconds")
    ap.add_argument("--gap", type=float, default=10.0, help="seconds")
    ap.add_argument("--min-duration", type=float, default=1.0, help="seconds")
    args = ap.parse_args()
    us = lambda s: int(round(s * 1e6))
    df = load(args.path)
    flights = sessionize(df["ts"].tolist(), df["throttle"].tolist(), args.threshold,
                         us(args.idle_window), us(args.gap), us(args.min_duration))
    out = []
    for start, end in flights:
        f = df[(df["ts"] >= start) & (df["ts"] <= end)].reset_index(drop=True)
        out.append({
            "flight_id": flight_id(args.drone_id, start),
            "start_ts_us": int(start), "end_ts_us": int(end), "packet_count": len(f),
            "metrics": compute(f, start, end, args.threshold),
        })
    print(json.dumps({"drone_id": args.drone_id, "flights": out}, allow_nan=False))


if __name__ == "__main__":
    main()
