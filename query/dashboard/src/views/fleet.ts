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
  const registerSlot = h("div");
  const registerButton = h("button", { type: "button", id: "register-drone" }, "Register a drone");
  registerButton.addEventListener("click", () => {
    registerButton.disabled = true;
    mount(registerSlot, registerForm((created) => {
      registerButton.disabled = false;
      if (created) load();
    }, () => {
      registerButton.disabled = false;
      mount(registerSlot);
    }));
  });
  mount(
    root,
    h(
      "div",
      { class: "page-head with-actions" },
      h("div", {}, h("h1", {}, "Fleet ", count), h("p", { class: "sub" }, "Live state of every drone, updated as it flies.")),
      h("div", { class: "actions" }, registerButton),
    ),
    registerSlot,
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
          h("p", {}, "Register one with the button above, or from the command line; a simulated fleet works too:"),
          h("code", { class: "block" }, `flightline drones create --name quad-1 --owner ${ctx.email}`),
          h("code", { class: "block" }, `flightline simulate --drones 3 --hz 20 --owner ${ctx.email}`),
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

/** Name a new drone; on success its API key is shown, this once, with a copy button. */
function registerForm(done: (created: boolean) => void, cancel: () => void): HTMLElement {
  const name = h("input", { id: "drone-name", name: "name", required: true, maxlength: 100, placeholder: "e.g. quad-7", autocomplete: "off" });
  const submit = h("button", { type: "submit", class: "primary" }, "Register");
  const close = h("button", { type: "button", class: "ghost" }, "Cancel");
  close.addEventListener("click", cancel);
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const form = h(
    "form",
    { class: "card register", id: "register-form" },
    h("div", { class: "card-head" }, h("h2", {}, "Register a drone")),
    h("div", { class: "inline-form" }, h("label", { for: "drone-name" }, "Name"), name, submit, close),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    try {
      const created = await api.createDrone(name.value.trim());
      const key = h("code", { class: "block key", id: "new-api-key" }, created.api_key);
      const copy = h("button", { type: "button" }, "Copy key");
      copy.addEventListener("click", async () => {
        try {
          await navigator.clipboard.writeText(created.api_key);
          copy.textContent = "Copied";
        } catch {
          getSelection()?.selectAllChildren(key); // no clipboard access: select it for Ctrl+C
        }
      });
      const dismiss = h("button", { type: "button", class: "ghost" }, "Done");
      dismiss.addEventListener("click", cancel);
      mount(
        form,
        h("div", { class: "card-head" }, h("h2", {}, `${created.name} is registered`)),
        h("p", {}, "Its API key (the drone sends it as ", h("code", {}, "X-API-Key"), "). It is shown only this once: store it in the drone's configuration now."),
        key,
        h("div", { class: "actions" }, copy, dismiss),
      );
      done(true);
    } catch (failure) {
      error.textContent = (failure as Error).message;
      error.hidden = false;
      submit.disabled = false;
    }
  });
  queueMicrotask(() => name.focus());
  return form;
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
