// Flight charts: time series with uPlot (cursor synchronised across charts), the voltage-sag
// scatter (voltage against current with its least-squares line) and the 2-D track, drawn on a
// plain canvas so the map keeps equal scales on both axes.

import uPlot from "uplot";
import { Packet, tsMillis } from "./api";
import { h } from "./dom";
import { heading, num } from "./format";

export interface Disposable {
  dispose(): void;
}

/** Colours come from CSS custom properties so charts follow the light/dark theme. */
function themeColor(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

export function palette() {
  return {
    axis: themeColor("--muted", "#5b6472"),
    grid: themeColor("--grid", "#e6e9ef"),
    text: themeColor("--text", "#1d2330"),
    blue: themeColor("--c-blue", "#2f6fdb"),
    orange: themeColor("--c-orange", "#e07b24"),
    green: themeColor("--c-green", "#1f9d6a"),
    red: themeColor("--c-red", "#d64545"),
    purple: themeColor("--c-purple", "#7b52c7"),
  };
}

export interface Line {
  label: string;
  unit: string;
  values: (number | null)[];
  color: string;
  scale: string;
  digits?: number;
  /** Dots instead of a line: for angles that wrap (yaw), where a line would jump across. */
  dots?: boolean;
}

export interface ScaleAxis {
  scale: string;
  label: string;
  side?: "left" | "right";
  range?: [number, number];
  /** Fixed tick values (e.g. every 90° for a heading). */
  ticks?: number[];
}

function axisFor(colors: ReturnType<typeof palette>, overrides: uPlot.Axis): uPlot.Axis {
  return {
    stroke: colors.axis,
    grid: { stroke: colors.grid, width: 1 },
    ticks: { stroke: colors.grid, width: 1 },
    font: "11px system-ui, sans-serif",
    labelFont: "11px system-ui, sans-serif",
    ...overrides,
  };
}

/** Keeps a chart as wide as its container. */
function fitWidth(container: HTMLElement, height: number, resize: (width: number, height: number) => void): ResizeObserver {
  const observer = new ResizeObserver(() => {
    const width = Math.floor(container.clientWidth);
    if (width > 0) resize(width, height);
  });
  observer.observe(container);
  return observer;
}

const HEIGHT = 220;

/** A time-series chart over seconds since the flight's start. */
export function timeChart(container: HTMLElement, xs: number[], lines: Line[], axes: ScaleAxis[]): Disposable {
  const colors = palette();
  const scales: uPlot.Scales = { x: { time: false } };
  for (const axis of axes) scales[axis.scale] = axis.range ? { range: axis.range } : { auto: true };
  const options: uPlot.Options = {
    width: Math.max(200, container.clientWidth),
    height: HEIGHT,
    cursor: { sync: { key: "flight" }, drag: { x: true, y: false } },
    legend: { live: true },
    scales,
    axes: [
      axisFor(colors, { label: "time since take-off (s)", labelSize: 18, size: 36 }),
      ...axes.map((axis) =>
        axisFor(colors, {
          scale: axis.scale,
          label: axis.label,
          labelSize: 18,
          side: axis.side === "right" ? 1 : 3,
          grid: { show: axis.side !== "right", stroke: colors.grid, width: 1 },
          size: 50,
          ...(axis.ticks ? { splits: () => axis.ticks! } : {}),
        }),
      ),
    ],
    series: [
      { label: "time", value: (_u, v) => (v == null ? "—" : `${v.toFixed(1)} s`) },
      ...lines.map(
        (line): uPlot.Series => ({
          label: line.label,
          scale: line.scale,
          stroke: line.color,
          width: 1.5,
          spanGaps: false,
          ...(line.dots
            ? { paths: () => null, points: { show: true, size: 2.5, width: 0, fill: line.color } }
            : { points: { show: false } }),
          value: (_u, v) => (v == null ? "—" : `${num(v, line.digits ?? 2)} ${line.unit}`.trim()),
        }),
      ),
    ],
  };
  const plot = new uPlot(options, [xs, ...lines.map((line) => line.values)] as uPlot.AlignedData, container);
  const observer = fitWidth(container, HEIGHT, (width, height) => plot.setSize({ width, height }));
  return {
    dispose() {
      observer.disconnect();
      plot.destroy();
    },
  };
}

/** A flight's telemetry as chart series: x in seconds since `startTs`, null where a packet lacks the value. */
export interface FlightSeries {
  xs: number[];
  voltage: (number | null)[];
  current: (number | null)[];
  /** voltage × current, W. */
  power: (number | null)[];
  /** Throttle in percent (the packets carry 0–1). */
  throttle: (number | null)[];
  roll: (number | null)[];
  pitch: (number | null)[];
  /** Yaw as a heading in [0, 360). */
  yaw: (number | null)[];
}

export function flightSeries(points: Packet[], startTs: string | number): FlightSeries {
  const start = tsMillis(startTs);
  const pick = (f: (p: Packet) => number | undefined) => points.map((p) => f(p) ?? null);
  return {
    xs: points.map((p) => (tsMillis(p.ts) - start) / 1000),
    voltage: pick((p) => p.voltage),
    current: pick((p) => p.current),
    power: pick((p) => (p.voltage !== undefined && p.current !== undefined ? p.voltage * p.current : undefined)),
    throttle: pick((p) => p.throttle * 100),
    roll: pick((p) => p.attitude?.[0]),
    pitch: pick((p) => p.attitude?.[1]),
    yaw: pick((p) => (p.attitude ? heading(p.attitude[2]) : undefined)),
  };
}

export interface Fit {
  intercept: number;
  slope: number;
}

/** Least-squares line y = intercept + slope·x; null with fewer than 2 distinct x. */
export function leastSquares(xs: number[], ys: number[]): Fit | null {
  const n = xs.length;
  if (n < 2) return null;
  let sx = 0, sy = 0;
  for (let i = 0; i < n; i++) {
    sx += xs[i];
    sy += ys[i];
  }
  const mx = sx / n, my = sy / n;
  let sxy = 0, sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
  }
  if (sxx === 0) return null;
  const slope = sxy / sxx;
  return { intercept: my - slope * mx, slope };
}

/** Voltage against current, one dot per point, with the fitted line (its slope is −R). */
export function sagChart(container: HTMLElement, currents: number[], voltages: number[]): Disposable {
  const colors = palette();
  const order = currents.map((_, i) => i).sort((a, b) => currents[a] - currents[b]);
  const xs = order.map((i) => currents[i]);
  const ys = order.map((i) => voltages[i]);
  const fit = leastSquares(xs, ys);
  const fitted = xs.map((x) => (fit ? fit.intercept + fit.slope * x : null));
  const options: uPlot.Options = {
    width: Math.max(200, container.clientWidth),
    height: HEIGHT,
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: false }, V: { auto: true } },
    axes: [
      axisFor(colors, { label: "current (A)", labelSize: 18, size: 36 }),
      axisFor(colors, { scale: "V", label: "voltage (V)", labelSize: 18, size: 50 }),
    ],
    series: [
      { label: "current", value: (_u, v) => (v == null ? "—" : `${num(v, 1)} A`) },
      {
        label: "voltage",
        scale: "V",
        stroke: colors.blue,
        paths: () => null,
        points: { show: true, size: 4, width: 0, fill: colors.blue + "99", stroke: colors.blue + "99" },
        value: (_u, v) => (v == null ? "—" : `${num(v, 2)} V`),
      },
      {
        label: fit ? `fit (R ≈ ${num(-fit.slope * 1000, 0)} mΩ)` : "fit",
        scale: "V",
        stroke: colors.red,
        width: 2,
        points: { show: false },
        value: (_u, v) => (v == null ? "—" : `${num(v, 2)} V`),
      },
    ],
  };
  const plot = new uPlot(options, [xs, ys, fitted] as uPlot.AlignedData, container);
  const observer = fitWidth(container, HEIGHT, (width, height) => plot.setSize({ width, height }));
  return {
    dispose() {
      observer.disconnect();
      plot.destroy();
    },
  };
}

export interface TrackPoint {
  x: number; // metres east
  y: number; // metres north
}

const TRACK_HEIGHT = 320;
const EARTH_RADIUS_M = 6_371_008.8;

/** Positions in metres: `position` x/y when present, else GPS projected around the first fix. */
export function trackFrom(points: { position?: number[]; gps?: { lat: number; lon: number } }[]): {
  track: TrackPoint[];
  source: "position" | "gps" | null;
} {
  const fromPosition = points.filter((p) => p.position).map((p) => ({ x: p.position![0], y: p.position![1] }));
  if (fromPosition.length >= 2) return { track: fromPosition, source: "position" };
  const fixes = points.filter((p) => p.gps).map((p) => p.gps!);
  if (fixes.length < 2) return { track: [], source: null };
  const lat0 = (fixes[0].lat * Math.PI) / 180;
  const lon0 = fixes[0].lon;
  const track = fixes.map((fix) => ({
    x: (((fix.lon - lon0) * Math.PI) / 180) * Math.cos(lat0) * EARTH_RADIUS_M,
    y: (((fix.lat - fixes[0].lat) * Math.PI) / 180) * EARTH_RADIUS_M,
  }));
  return { track, source: "gps" };
}

/** A "nice" grid step (1, 2 or 5 × 10^k) giving about `count` lines over `span`. */
export function niceStep(span: number, count: number): number {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const scaled = raw / power;
  return (scaled < 1.5 ? 1 : scaled < 3.5 ? 2 : scaled < 7.5 ? 5 : 10) * power;
}

/** The 2-D track, north up, equal scales, with a metre grid and start/end markers. */
export function trackChart(container: HTMLElement, track: TrackPoint[]): Disposable {
  const canvas = h("canvas", { class: "track", role: "img", "aria-label": "flight track seen from above" });
  container.appendChild(canvas);
  const draw = (width: number) => {
    const colors = palette();
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(TRACK_HEIGHT * ratio);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${TRACK_HEIGHT}px`;
    const ctx = canvas.getContext("2d")!;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, TRACK_HEIGHT);
    let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
    for (const p of track) {
      minX = Math.min(minX, p.x); maxX = Math.max(maxX, p.x);
      minY = Math.min(minY, p.y); maxY = Math.max(maxY, p.y);
    }
    const pad = 28;
    const spanX = Math.max(maxX - minX, 1), spanY = Math.max(maxY - minY, 1);
    const scale = Math.min((width - 2 * pad) / spanX, (TRACK_HEIGHT - 2 * pad) / spanY);
    const cx = (minX + maxX) / 2, cy = (minY + maxY) / 2;
    const px = (x: number) => width / 2 + (x - cx) * scale;
    const py = (y: number) => TRACK_HEIGHT / 2 - (y - cy) * scale;

    // metre grid over the visible area
    const step = niceStep(Math.max((width / scale), (TRACK_HEIGHT / scale)), 8);
    const x0 = cx - width / 2 / scale, x1 = cx + width / 2 / scale;
    const y0 = cy - TRACK_HEIGHT / 2 / scale, y1 = cy + TRACK_HEIGHT / 2 / scale;
    ctx.strokeStyle = colors.grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let gx = Math.ceil(x0 / step) * step; gx <= x1; gx += step) {
      ctx.moveTo(Math.round(px(gx)) + 0.5, 0);
      ctx.lineTo(Math.round(px(gx)) + 0.5, TRACK_HEIGHT);
    }
    for (let gy = Math.ceil(y0 / step) * step; gy <= y1; gy += step) {
      ctx.moveTo(0, Math.round(py(gy)) + 0.5);
      ctx.lineTo(width, Math.round(py(gy)) + 0.5);
    }
    ctx.stroke();

    // the path
    ctx.strokeStyle = colors.blue;
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    ctx.beginPath();
    track.forEach((p, i) => (i === 0 ? ctx.moveTo(px(p.x), py(p.y)) : ctx.lineTo(px(p.x), py(p.y))));
    ctx.stroke();

    const marker = (p: TrackPoint, color: string, label: string) => {
      ctx.fillStyle = color;
      ctx.beginPath();
      ctx.arc(px(p.x), py(p.y), 5, 0, 2 * Math.PI);
      ctx.fill();
      ctx.fillStyle = colors.text;
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillText(label, px(p.x) + 8, py(p.y) - 6);
    };
    const first = track[0], last = track[track.length - 1];
    const apart = Math.hypot(px(first.x) - px(last.x), py(first.y) - py(last.y));
    // a circuit lands where it took off: one label for both
    marker(last, colors.red, apart < 40 ? "" : "landing");
    marker(first, colors.green, apart < 40 ? "take-off · landing" : "take-off");

    // legend: grid step and extent, north arrow
    ctx.fillStyle = colors.axis;
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(`grid ${num(step, step < 1 ? 1 : 0)} m · extent ${num(spanX, 0)} × ${num(spanY, 0)} m`, 10, TRACK_HEIGHT - 10);
    ctx.textAlign = "center";
    ctx.fillText("N", width - 18, 18);
    ctx.beginPath();
    ctx.moveTo(width - 18, 24);
    ctx.lineTo(width - 22, 34);
    ctx.lineTo(width - 14, 34);
    ctx.closePath();
    ctx.fill();
    ctx.textAlign = "start";
  };
  const observer = new ResizeObserver(() => {
    const width = Math.floor(container.clientWidth);
    if (width > 0) draw(width);
  });
  observer.observe(container);
  draw(Math.max(200, container.clientWidth));
  return {
    dispose() {
      observer.disconnect();
    },
  };
}
