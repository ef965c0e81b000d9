// A drone's live tile: battery, throttle, attitude, RSSI and how long ago it was last heard from.

import { Drone, Packet, tsMillis } from "./api";
import { h, setText, svg } from "./dom";
import { age, DASH, heading, num, percent } from "./format";

/** Heard from within this long: "live"; within STALE_MS: "stale"; after that: "offline". */
const LIVE_MS = 3_000;
const STALE_MS = 30_000;

type Field = "voltage" | "current" | "power" | "rssi" | "throttle" | "roll" | "pitch" | "yaw" | "mode";

export type LinkState = "live" | "stale" | "offline";

/** What a tile shows for a packet: the text of each field, absent values as DASH. */
export function readout(packet: Packet): Record<Field, string> {
  const { voltage, current } = packet;
  const [roll, pitch, yaw] = packet.attitude ?? [NaN, NaN, NaN];
  const mode = packet.extra?.mode;
  return {
    voltage: voltage === undefined ? DASH : `${num(voltage, 2)} V`,
    current: current === undefined ? DASH : `${num(current, 1)} A`,
    power: voltage === undefined || current === undefined ? DASH : `${num(voltage * current, 0)} W`,
    rssi: packet.rssi === undefined ? DASH : String(packet.rssi),
    throttle: percent(packet.throttle),
    roll: Number.isFinite(roll) ? `${num(roll, 1)}°` : DASH,
    pitch: Number.isFinite(pitch) ? `${num(pitch, 1)}°` : DASH,
    yaw: Number.isFinite(yaw) ? `${num(heading(yaw), 0)}°` : DASH,
    mode: mode === undefined ? "" : String(mode),
  };
}

/** The throttle bar's width in percent, the throttle clamped to 0–1. */
export function throttleBarPercent(throttle: number): number {
  return Math.max(0, Math.min(1, throttle)) * 100;
}

/** Heard from `sinceMs` ago: live, stale or offline. */
export function linkState(sinceMs: number): LinkState {
  return sinceMs < LIVE_MS ? "live" : sinceMs < STALE_MS ? "stale" : "offline";
}

export class LiveTile {
  readonly element: HTMLElement;
  private readonly fields = new Map<Field, HTMLElement>();
  private readonly ageElement: HTMLElement;
  private readonly stateElement: HTMLElement;
  private readonly throttleFill: HTMLElement;
  private readonly horizon: SVGGElement;
  private readonly heading: SVGGElement;
  private lastTs: number | null = null;

  constructor(readonly drone: Drone, options: { link: boolean; wide?: boolean }) {
    const field = (name: Field, cls = "value", initial = DASH) => {
      const element = h("span", { class: cls, dataset: { field: name } }, initial);
      this.fields.set(name, element);
      return element;
    };
    const metric = (label: string, name: Field) =>
      h("div", { class: "metric" }, h("span", { class: "label" }, label), field(name));

    // GET /v1/drones/{id}/live is null when the drone sent nothing recently (or ever)
    this.ageElement = h("span", { class: "age", dataset: { field: "age" } }, "no recent data");
    this.stateElement = h("span", { class: "state" }, "offline");
    this.throttleFill = h("div", { class: "bar-fill" });

    const sky = svg("rect", { x: -60, y: -120, width: 120, height: 120, class: "sky" });
    const ground = svg("rect", { x: -60, y: 0, width: 120, height: 120, class: "ground" });
    const line = svg("line", { x1: -60, y1: 0, x2: 60, y2: 0, class: "horizon-line" });
    this.horizon = svg("g", {}, sky, ground, line);
    const clip = svg("clipPath", { id: `clip-${drone.id}` }, svg("circle", { r: 26 }));
    const wings = svg("path", { d: "M -16 0 H -6 L 0 5 L 6 0 H 16", class: "wings" });
    const needle = svg("path", { d: "M 0 -34 L -4 -27 H 4 Z", class: "needle" });
    this.heading = svg("g", {}, needle);
    const attitude = svg(
      "svg",
      { viewBox: "-36 -36 72 72", class: "attitude", role: "img", "aria-label": "attitude indicator" },
      svg("defs", {}, clip),
      svg("g", { "clip-path": `url(#clip-${drone.id})` }, this.horizon),
      svg("circle", { r: 26, class: "bezel" }),
      wings,
      this.heading,
    );

    const name = options.link
      ? h("a", { class: "name", href: `#/drones/${drone.id}` }, drone.name)
      : h("span", { class: "name" }, drone.name);

    this.element = h(
      "article",
      { class: `tile${options.wide ? " wide" : ""} is-nodata`, dataset: { droneId: drone.id } },
      h("header", { class: "tile-head" }, h("span", { class: "dot", "aria-hidden": "true" }), name, this.stateElement),
      h(
        "div",
        { class: "tile-body" },
        h(
          "div",
          { class: "metrics" },
          metric("Voltage", "voltage"),
          metric("Current", "current"),
          metric("Power", "power"),
          metric("RSSI", "rssi"),
        ),
        attitude,
      ),
      h(
        "div",
        { class: "throttle" },
        h("span", { class: "label" }, "Throttle"),
        h("div", { class: "bar" }, this.throttleFill),
        field("throttle", "value small"),
      ),
      h(
        "footer",
        { class: "tile-foot" },
        h(
          "span",
          { class: "rpy" },
          h("span", { class: "label" }, "R "),
          field("roll", "value small"),
          h("span", { class: "label" }, " P "),
          field("pitch", "value small"),
          h("span", { class: "label" }, " Y "),
          field("yaw", "value small"),
        ),
        field("mode", "mode", ""),
        this.ageElement,
      ),
    );
  }

  update(packet: Packet): void {
    const texts = readout(packet);
    for (const [name, element] of this.fields) setText(element, texts[name]);
    this.throttleFill.style.width = `${throttleBarPercent(packet.throttle)}%`;
    if (packet.attitude) {
      const [roll, pitch, yaw] = packet.attitude;
      // Pitch moves the horizon (1.2 px per degree, clamped), roll turns it the other way.
      const shift = Math.max(-30, Math.min(30, pitch * 1.2));
      this.horizon.setAttribute("transform", `rotate(${-roll}) translate(0 ${shift})`);
      this.heading.setAttribute("transform", `rotate(${yaw})`);
    }
    this.lastTs = tsMillis(packet.ts);
    this.tick(Date.now());
  }

  /** Refreshes the age and the live/stale/offline state; called a few times a second. */
  tick(now: number): void {
    if (this.lastTs === null) return;
    const since = now - this.lastTs;
    setText(this.ageElement, age(since));
    const state = linkState(since);
    setText(this.stateElement, state);
    const cls = `is-${state}`;
    if (!this.element.classList.contains(cls)) {
      this.element.classList.remove("is-nodata", "is-live", "is-stale", "is-offline");
      this.element.classList.add(cls);
    }
  }
}
