// Number, time and unit formatting shared by the views. Absent values print as an em dash.

export const DASH = "—";

export function num(value: number | null | undefined, digits = 1): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return DASH;
  // no "-0.0" for a value that rounds to zero
  const shown = Math.abs(value) < 0.5 * 10 ** -digits ? 0 : value;
  return shown.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function withUnit(value: number | null | undefined, unit: string, digits = 1): string {
  const text = num(value, digits);
  return text === DASH || unit === "" ? text : `${text} ${unit}`;
}

export function percent(fraction: number | null | undefined): string {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) return DASH;
  return `${Math.round(fraction * 100)} %`;
}

/** An angle in degrees as a compass heading in [0, 360): -90 → 270, 370 → 10. */
export function heading(degrees: number): number {
  return ((degrees % 360) + 360) % 360;
}

/** "12 s", "4 min 05 s", "1 h 02 min". */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return DASH;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const whole = Math.round(seconds);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = whole % 60;
  return h > 0 ? `${h} h ${String(m).padStart(2, "0")} min` : `${m} min ${String(s).padStart(2, "0")} s`;
}

/** How long ago, for the live tiles: "0.4 s ago", "12 s ago", "3 min ago". */
export function age(ms: number): string {
  const seconds = Math.max(0, ms) / 1000;
  if (seconds < 10) return `${seconds.toFixed(1)} s ago`;
  if (seconds < 120) return `${Math.round(seconds)} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

export function when(ts: string | number | null | undefined): string {
  if (ts === null || ts === undefined) return DASH;
  const date = new Date(ts);
  return Number.isNaN(date.getTime()) ? String(ts) : dateTime.format(date);
}

export function clock(ts: string | number): string {
  const date = new Date(ts);
  return Number.isNaN(date.getTime()) ? String(ts) : timeOnly.format(date);
}

export function shortId(id: string): string {
  return id.slice(0, 8);
}

/** Up to 3 decimals, trailing zeros dropped: 10 → "10", 5.5 → "5.5", 0.0125 → "0.013". */
function compact(value: number): string {
  return Number.isFinite(value) ? String(Number(value.toFixed(3))) : DASH;
}

/** The flight rule a flight was cut with, in one line: "throttle ≥ 5 % · idle 10 s · gap 10 s · min 1 s". */
export function flightRule(rule: { throttle_threshold: number; idle_s: number; gap_s: number; min_s: number } | null | undefined): string {
  if (!rule) return DASH;
  return `throttle ≥ ${compact(rule.throttle_threshold * 100)} % · idle ${compact(rule.idle_s)} s · gap ${compact(rule.gap_s)} s · min ${compact(rule.min_s)} s`;
}
