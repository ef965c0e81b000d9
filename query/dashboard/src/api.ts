// The HTTP API of CONTRACT.md §2 as the dashboard uses it, and the signed-in session.

export interface Drone {
  id: string;
  name: string;
  owner_id: string | null;
  created_at: string;
  updated_at: string;
}

/** A telemetry packet (CONTRACT.md §1) as the live stream and flight detail carry it. */
export interface Packet {
  drone_id?: string;
  ts: string | number;
  throttle: number;
  voltage?: number;
  current?: number;
  mah_drawn?: number;
  rssi?: number;
  position?: [number, number, number];
  gps?: { lat: number; lon: number; alt_m: number };
  velocity?: [number, number, number];
  attitude?: [number, number, number];
  extra?: Record<string, string | number | boolean>;
}

export interface FlightSummary {
  id: string;
  drone_id: string;
  start_ts: string;
  end_ts: string;
  duration_s: number | null;
  total_mah: number | null;
  energy_wh: number | null;
  min_voltage: number | null;
  max_current: number | null;
  distance_m: number | null;
  packet_count: number;
  analytics_status: "pending" | "done" | "failed" | string;
  analytics_version: number | null;
  /** The flight rule the flight was cut with (CONTRACT.md §3). */
  rule: FlightRule;
}

/** The flight rule's parameters: throttle threshold T and, in seconds, idle window W, gap G and the shortest flight kept. */
export interface FlightRule {
  throttle_threshold: number;
  idle_s: number;
  gap_s: number;
  min_s: number;
}

export interface FlightDetail extends FlightSummary {
  computed_metrics: Record<string, unknown> | null;
  telemetry?: Packet[];
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

// ---- session (sessionStorage: gone when the tab closes) ----

const TOKEN_KEY = "flightline.token";
const EMAIL_KEY = "flightline.email";
const EXPIRES_KEY = "flightline.expires_at";

export const session = {
  get token(): string | null {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const expiresAt = Number(sessionStorage.getItem(EXPIRES_KEY) ?? 0);
    if (token && expiresAt && Date.now() >= expiresAt) {
      session.clear();
      return null;
    }
    return token;
  },
  get email(): string {
    return sessionStorage.getItem(EMAIL_KEY) ?? "";
  },
  save(token: string, email: string, expiresInS: number): void {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(EMAIL_KEY, email);
    sessionStorage.setItem(EXPIRES_KEY, String(Date.now() + expiresInS * 1000));
  },
  clear(): void {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(EMAIL_KEY);
    sessionStorage.removeItem(EXPIRES_KEY);
  },
};

/** Called when the server rejects our token (expired, secret rotated): back to sign-in. */
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

async function request(method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = { accept: "application/json" };
  const token = session.token;
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "network", "Cannot reach the Flightline server. Check your connection and try again.");
  }
  if (response.ok) return response;
  let code = `http_${response.status}`;
  let message = response.statusText || `HTTP ${response.status}`;
  try {
    const error = await response.json();
    if (typeof error?.error === "string") code = error.error;
    if (typeof error?.message === "string") message = error.message;
  } catch {
    // not a JSON error body; keep the status text
  }
  if (response.status === 401 && token) onUnauthorized();
  throw new ApiError(response.status, code, message);
}

async function json<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await request(method, path, body);
  return (await response.json()) as T;
}

const enc = encodeURIComponent;

export const api = {
  signup: (email: string, password: string) =>
    json<{ id: string; email: string }>("POST", "/v1/auth/signup", { email, password }),
  token: (email: string, password: string) =>
    json<{ access_token: string; token_type: string; expires_in: number }>("POST", "/v1/auth/token", {
      email,
      password,
    }),
  drones: () => json<Drone[]>("GET", "/v1/drones"),
  drone: (id: string) => json<Drone>("GET", `/v1/drones/${enc(id)}`),
  createDrone: (name: string) => json<Drone & { api_key: string }>("POST", "/v1/drones", { name }),
  live: (id: string) => json<Packet | null>("GET", `/v1/drones/${enc(id)}/live`),
  flights: (droneId: string, limit: number, offset: number) =>
    json<FlightSummary[]>("GET", `/v1/drones/${enc(droneId)}/flights?limit=${limit}&offset=${offset}`),
  flight: (id: string, withTelemetry: boolean) =>
    json<FlightDetail>(
      "GET",
      `/v1/flights/${enc(id)}` + (withTelemetry ? "?include=telemetry&max_points=2000" : ""),
    ),
  recompute: (id: string) =>
    json<{ flight_id: string; status: string }>("POST", `/v1/flights/${enc(id)}/recompute`, {
      reason: "requested from the dashboard",
    }),
  /** The CSV needs the Bearer header, so it is fetched and handed to the browser as a blob. */
  csv: async (id: string): Promise<Blob> => (await request("GET", `/v1/flights/${enc(id)}/telemetry.csv`)).blob(),
};

export function liveStreamUrl(maxHz: number): string {
  return `/v1/live/stream?access_token=${enc(session.token ?? "")}&max_hz=${maxHz}`;
}

export function tsMillis(ts: string | number): number {
  return typeof ts === "number" ? ts : Date.parse(ts);
}
