// The metrics of CONTRACT.md §4 in the order, units and precision the flight page shows them.

import { h } from "./dom";
import { DASH, num } from "./format";

interface MetricDef {
  key: string;
  label: string;
  unit: string;
  digits: number;
  help: string;
}

interface Group {
  title: string;
  metrics: MetricDef[];
}

const m = (key: string, label: string, unit: string, digits: number, help: string): MetricDef => ({ key, label, unit, digits, help });

export const GROUPS: Group[] = [
  {
    title: "Battery and energy",
    metrics: [
      m("energy_wh", "Energy", "Wh", 2, "∫ voltage·current dt / 3600"),
      m("total_mah", "Charge drawn", "mAh", 0, "∫ current dt / 3.6"),
      m("mah_drawn_delta", "Reported mAh delta", "mAh", 0, "last − first reported mah_drawn"),
      m("min_voltage", "Min voltage", "V", 2, "lowest voltage of the flight"),
      m("max_voltage", "Max voltage", "V", 2, "highest voltage of the flight"),
      m("max_current", "Max current", "A", 1, "highest current of the flight"),
      m("avg_current", "Average current", "A", 1, "time-weighted mean current"),
      m("voltage_sag_v", "Voltage sag", "V", 2, "median voltage at low current (≤ p10) − at high current (≥ p90)"),
      m("internal_resistance_mohm", "Internal resistance", "mΩ", 1, "−1000 × slope of voltage against current"),
    ],
  },
  {
    title: "Flight",
    metrics: [
      m("duration_s", "Duration", "s", 1, "end_ts − start_ts"),
      m("packet_count", "Packets", "", 0, "rows in the flight"),
      m("distance_m", "Distance", "m", 1, "3-D path length (position, else GPS)"),
      m("wh_per_km", "Energy per km", "Wh/km", 2, "energy_wh / (distance_m / 1000); needs ≥ 10 m"),
      m("max_speed_mps", "Max speed", "m/s", 1, "max ‖velocity‖"),
      m("max_altitude_m", "Max altitude", "m", 1, "max z, or max GPS altitude above the first fix"),
      m("gaps.count", "Gaps > 1 s", "", 0, "consecutive-row gaps longer than 1 s"),
      m("gaps.seconds", "Time in gaps", "s", 1, "summed length of those gaps"),
    ],
  },
  {
    title: "Piloting",
    metrics: [
      m("throttle_mean", "Mean throttle", "", 3, "time-weighted mean throttle (0–1)"),
      m("hover_throttle", "Hover throttle", "", 3, "median throttle while nearly still (‖v‖ < 0.5 m/s)"),
      m("throttle_smoothness", "Throttle smoothness", "1/s", 3, "mean |Δthrottle/dt|; lower is smoother"),
      m("attitude_std_deg.roll", "Roll std. dev.", "°", 2, "sample standard deviation of roll"),
      m("attitude_std_deg.pitch", "Pitch std. dev.", "°", 2, "sample standard deviation of pitch"),
      m("attitude_std_deg.yaw", "Yaw std. dev.", "°", 2, "sample standard deviation of unwrapped yaw"),
      m("pilot_fingerprint.throttle_p10", "Throttle p10", "", 3, "10th percentile of throttle"),
      m("pilot_fingerprint.throttle_p50", "Throttle p50", "", 3, "median throttle"),
      m("pilot_fingerprint.throttle_p90", "Throttle p90", "", 3, "90th percentile of throttle"),
      m("pilot_fingerprint.roll_rate_p95_dps", "Roll rate p95", "°/s", 1, "95th percentile of |Δroll/dt|"),
      m("pilot_fingerprint.pitch_rate_p95_dps", "Pitch rate p95", "°/s", 1, "95th percentile of |Δpitch/dt|"),
      m("pilot_fingerprint.yaw_rate_p95_dps", "Yaw rate p95", "°/s", 1, "95th percentile of |Δyaw/dt| (unwrapped)"),
      m("pilot_fingerprint.throttle_reversals_per_min", "Throttle reversals", "per min", 1, "sign changes of Δthrottle per minute"),
    ],
  },
];

const SHOWN_ELSEWHERE = new Set(["power_curve", "analytics_version"]);

/** A metric by its dotted path ("gaps.count"); undefined when a step on the way is absent. */
export function lookup(metrics: Record<string, unknown>, path: string): unknown {
  let value: unknown = metrics;
  for (const part of path.split(".")) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/** A metric's text: null or absent as DASH, numbers rounded with their unit, objects as JSON. */
export function show(value: unknown, unit: string, digits: number): string {
  if (value === null || value === undefined) return DASH;
  if (typeof value === "number") {
    if (unit === "°") return `${num(value, digits)}°`;
    return unit ? `${num(value, digits)} ${unit}` : num(value, digits);
  }
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export interface MetricRow {
  key: string;
  label: string;
  help: string;
  value: unknown;
  text: string;
}

export interface MetricSection {
  title: string;
  rows: MetricRow[];
}

/** The rows of the metrics tables, one section per group; keys the dashboard does not know yet are listed last as they are. */
export function metricSections(metrics: Record<string, unknown>): MetricSection[] {
  const known = new Set<string>();
  const sections: MetricSection[] = GROUPS.map((group) => ({
    title: group.title,
    rows: group.metrics.map((def) => {
      known.add(def.key.split(".")[0]);
      const value = lookup(metrics, def.key);
      return { key: def.key, label: def.label, help: def.help, value, text: show(value, def.unit, def.digits) };
    }),
  }));
  const others = Object.keys(metrics).filter((key) => !known.has(key) && !SHOWN_ELSEWHERE.has(key)).sort();
  if (others.length) {
    sections.push({
      title: "Other",
      rows: others.map((key) => ({ key, label: key, help: "", value: metrics[key], text: show(metrics[key], "", 3) })),
    });
  }
  return sections;
}

/** The metrics, one table per group (see metricSections). */
export function metricsTable(metrics: Record<string, unknown>): HTMLElement {
  const row = ({ key, label, help, value, text }: MetricRow) =>
    h(
      "tr",
      { dataset: { metric: key } },
      h("th", { scope: "row", title: help }, label),
      h("td", { class: value === null || value === undefined ? "num muted" : "num", title: value === null ? "inputs absent" : help }, text),
    );
  const tables = metricSections(metrics).map((section) =>
    h("table", { class: "metrics-table" }, h("caption", {}, section.title), h("tbody", {}, ...section.rows.map(row))),
  );
  return h("div", { class: "metrics-grid", id: "metrics" }, ...tables);
}

interface PowerBin {
  bin_start: number;
  mean_power_w: number | null;
  mean_current_a: number | null;
  seconds: number | null;
}

export interface PowerCurveRow {
  /** The throttle decile, "30–40 %". */
  throttle: string;
  power: string;
  current: string;
  time: string;
  /** The bar's width: the bin's mean power as a share of the highest (at least 1 W), 0–100. */
  barPercent: number;
}

/** The power curve's rows; null when computed_metrics has no bins. */
export function powerCurveRows(metrics: Record<string, unknown>): PowerCurveRow[] | null {
  const bins = metrics.power_curve;
  if (!Array.isArray(bins) || bins.length === 0) return null;
  const typed = bins as PowerBin[];
  const maxPower = Math.max(1, ...typed.map((bin) => bin.mean_power_w ?? 0));
  return typed.map((bin) => ({
    throttle: `${Math.round(bin.bin_start * 100)}–${Math.round(bin.bin_start * 100 + 10)} %`,
    power: show(bin.mean_power_w, "W", 0),
    current: show(bin.mean_current_a, "A", 1),
    time: show(bin.seconds, "s", 1),
    barPercent: Math.max(0, (bin.mean_power_w ?? 0) / maxPower) * 100,
  }));
}

/** The power curve: mean power and current per throttle decile, with a bar for the power. */
export function powerCurveTable(metrics: Record<string, unknown>): HTMLElement | null {
  const rows = powerCurveRows(metrics);
  if (!rows) return null;
  return h(
    "table",
    { class: "power-curve", id: "power-curve" },
    h("thead", {}, h("tr", {}, h("th", {}, "Throttle"), h("th", { class: "num" }, "Mean power"), h("th", { class: "num" }, "Mean current"), h("th", { class: "num" }, "Time"), h("th", { class: "bar-col" }, ""))),
    h(
      "tbody",
      {},
      ...rows.map((row) => {
        const bar = h("div", { class: "hbar" });
        bar.style.width = `${row.barPercent}%`;
        return h(
          "tr",
          {},
          h("td", {}, row.throttle),
          h("td", { class: "num" }, row.power),
          h("td", { class: "num" }, row.current),
          h("td", { class: "num" }, row.time),
          h("td", { class: "bar-col" }, bar),
        );
      }),
    ),
  );
}
