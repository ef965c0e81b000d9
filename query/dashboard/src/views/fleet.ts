// The fleet: one live tile per drone, fed by the session's SSE stream.

import { api, Drone } from "../api";
import { h, mount } from "../dom";
import { LiveHub } from "../live";
import { LiveTile } from "../tile";
import type { ViewContext } from "../app";

export function fleetView(root: HTMLElement, ctx: ViewContext): () => void {
  const tiles = new Map<string, LiveTile>();
  const grid = h("section", { class: "tile-grid", id: "fleet", "aria-live": "off" });
  const count = h("span", { class: "count" });
  const body = h("div", { class: "loading" }, "Loading your fleet…");
  mount(
    root,
    h("div", { class: "page-head" }, h("h1", {}, "Fleet ", count), h("p", { class: "sub" }, "Live state of every drone, updated as it flies.")),
    body,
  );

  let disposed = false;
  let refreshing = false;
  let lastLoad = 0;
  const render = (drones: Drone[]) => {
    body.className = "";
    drones.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
    count.textContent = drones.length ? `· ${drones.length} drone${drones.length === 1 ? "" : "s"}` : "";
    if (drones.length === 0) {
      mount(
        body,
        h(
          "div",
          { class: "empty" },
          h("h2", {}, "No drones yet"),
          h("p", {}, "Register a drone with ", h("code", {}, "flightline drones create --name NAME --owner " + ctx.email),
            " or fly a simulated fleet with ", h("code", {}, "flightline simulate --owner " + ctx.email), "."),
        ),
      );
      return;
    }
    for (const drone of drones) {
      if (tiles.has(drone.id)) continue;
      const tile = new LiveTile(drone, { link: true });
      tiles.set(drone.id, tile);
      const known = ctx.hub.get(drone.id);
      if (known) tile.update(known);
      else seed(ctx.hub, drone.id);
    }
    mount(grid, ...[...tiles.values()].sort((a, b) => a.drone.name.localeCompare(b.drone.name, undefined, { numeric: true })).map((tile) => tile.element));
    if (grid.parentElement !== body) mount(body, grid);
  };

  const load = async () => {
    if (refreshing) return;
    refreshing = true;
    lastLoad = Date.now();
    try {
      const drones = await api.drones();
      if (!disposed) render(drones);
    } catch (failure) {
      if (!disposed && tiles.size === 0) mount(body, h("div", { class: "error-box", role: "alert" }, `Could not load your drones: ${(failure as Error).message}`));
      else ctx.notify(`Could not refresh the fleet: ${(failure as Error).message}`, "error");
    } finally {
      refreshing = false;
    }
  };

  const unsubscribe = ctx.hub.subscribe((packet) => {
    const tile = tiles.get(packet.drone_id!);
    if (tile) tile.update(packet);
    else if (Date.now() - lastLoad > 5_000) load(); // a drone registered after the page loaded
  });
  const ticker = window.setInterval(() => {
    const now = Date.now();
    for (const tile of tiles.values()) tile.tick(now);
  }, 250);

  load();
  return () => {
    disposed = true;
    unsubscribe();
    window.clearInterval(ticker);
  };
}

/** The latest state from Redis, so a parked drone's tile is not empty until it moves. */
function seed(hub: LiveHub, droneId: string): void {
  api.live(droneId).then(
    (packet) => {
      if (packet) hub.accept({ ...packet, drone_id: droneId });
    },
    () => {}, // the stream fills the tile anyway
  );
}

export { seed as seedLive };
