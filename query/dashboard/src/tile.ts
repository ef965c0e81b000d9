// A drone's live tile: battery, throttle, attitude, RSSI and how long ago it was last heard from.

import { Drone, Packet, tsMillis } from "./api";
import { h, setText, svg } from "./dom";
import { age, DASH, num, percent } from "./format";

/** Heard from within this long: "live"; within STALE_MS: "stale"; after that: "offline". */
const LIVE_MS = 3_000;
const STALE_MS = 30_000;

type Field = "voltage" | "current" | "power" | "rssi" | "throttle" | "roll" | "pitch" | "yaw" | "mode";

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
    const set = (name: Field, text: string) => setText(this.fields.get(name)!, text);
    const { voltage, current } = packet;
    set("voltage", voltage === undefined ? DASH : `${num(voltage, 2)} V`);
    set("current", current === undefined ? DASH : `${num(current, 1)} A`);
    set(
      "power",
      voltage === undefined || current === undefined ? DASH : `${num(voltage * current, 0)} W`,
    );
    set("rssi", packet.rssi === undefined ? DASH : String(packet.rssi));
    set("throttle", percent(packet.throttle));
    this.throttleFill.style.width = `${Math.max(0, Math.min(1, packet.throttle)) * 100}%`;
    const [roll, pitch, yaw] = packet.attitude ?? [NaN, NaN, NaN];
    set("roll", Number.isFinite(roll) ? `${num(roll, 1)}°` : DASH);
    set("pitch", Number.isFinite(pitch) ? `${num(pitch, 1)}°` : DASH);
    set("yaw", Number.isFinite(yaw) ? `${num(((yaw % 360) + 360) % 360, 0)}°` : DASH);
    if (packet.attitude) {
      // Pitch moves the horizon (1.2 px per degree, clamped), roll turns it the other way.
      const shift = Math.max(-30, Math.min(30, pitch * 1.2));
      this.horizon.setAttribute("transform", `rotate(${-roll}) translate(0 ${shift})`);
      this.heading.setAttribute("transform", `rotate(${yaw})`);
    }
    const mode = packet.extra?.mode;
    set("mode", mode === undefined ? "" : String(mode));
    this.lastTs = tsMillis(packet.ts);
    this.tick(Date.now());
  }

  /** Refreshes the age and the live/stale/offline state; called a few times a second. */
  tick(now: number): void {
    if (this.lastTs === null) return;
    const since = now - this.lastTs;
    setText(this.ageElement, age(since));
    const state = since < LIVE_MS ? "live" : since < STALE_MS ? "stale" : "offline";
    setText(this.stateElement, state);
    const cls = `is-${state}`;
    if (!this.element.classList.contains(cls)) {
      this.element.classList.remove("is-nodata", "is-live", "is-stale", "is-offline");
      this.element.classList.add(cls);
    }
  }
}
