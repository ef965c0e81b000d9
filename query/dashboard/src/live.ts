// One EventSource on GET /v1/live/stream for the whole signed-in session: the fleet view and the
// drone page subscribe to it, and it remembers each drone's newest packet so a view opened later
// starts from the current state.

import { api, liveStreamUrl, Packet, tsMillis } from "./api";

export type LiveStatus = "connecting" | "live" | "reconnecting" | "stopped";

/** Events per second per drone the dashboard asks for: smooth enough, and cheap. */
const MAX_HZ = 5;
const MAX_RETRY_MS = 30_000;

/** The data of a `telemetry` event of the stream; null when it is not a JSON object. */
export function parsePacket(data: string): Packet | null {
  let packet: unknown;
  try {
    packet = JSON.parse(data);
  } catch {
    return null;
  }
  return packet !== null && typeof packet === "object" ? (packet as Packet) : null;
}

export class LiveHub {
  private readonly latest = new Map<string, Packet>();
  private readonly listeners = new Set<(packet: Packet) => void>();
  private readonly statusListeners = new Set<(status: LiveStatus) => void>();
  private source: EventSource | null = null;
  private retryTimer: number | undefined;
  private retryMs = 1000;
  status: LiveStatus = "stopped";

  start(): void {
    if (this.source) return;
    this.setStatus(this.status === "stopped" ? "connecting" : "reconnecting");
    const source = new EventSource(liveStreamUrl(MAX_HZ));
    this.source = source;
    source.onopen = () => {
      this.retryMs = 1000;
      this.setStatus("live");
    };
    source.addEventListener("telemetry", (event) => {
      const packet = parsePacket((event as MessageEvent<string>).data);
      if (packet) this.accept(packet);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CONNECTING) {
        this.setStatus("reconnecting"); // the browser retries by itself
        return;
      }
      // CLOSED: the server refused the stream (an expired token, or a 5xx). A request that
      // carries the token tells which: a 401 signs the user out, anything else retries later.
      source.close();
      this.source = null;
      this.setStatus("reconnecting");
      api.drones().then(
        () => this.scheduleRetry(),
        () => this.scheduleRetry(),
      );
    };
  }

  stop(): void {
    window.clearTimeout(this.retryTimer);
    this.source?.close();
    this.source = null;
    this.latest.clear();
    this.setStatus("stopped");
  }

  /** A packet from the stream or from GET /v1/drones/{id}/live; older ones are ignored. */
  accept(packet: Packet): void {
    const droneId = packet.drone_id;
    if (!droneId) return;
    const known = this.latest.get(droneId);
    if (known && tsMillis(known.ts) > tsMillis(packet.ts)) return;
    this.latest.set(droneId, packet);
    for (const listener of this.listeners) listener(packet);
  }

  get(droneId: string): Packet | undefined {
    return this.latest.get(droneId);
  }

  subscribe(listener: (packet: Packet) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onStatus(listener: (status: LiveStatus) => void): () => void {
    this.statusListeners.add(listener);
    listener(this.status);
    return () => this.statusListeners.delete(listener);
  }

  private scheduleRetry(): void {
    if (this.status === "stopped") return;
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => this.start(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
  }

  private setStatus(status: LiveStatus): void {
    if (this.status === status) return;
    this.status = status;
    for (const listener of this.statusListeners) listener(status);
  }
}
