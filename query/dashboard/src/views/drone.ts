// A drone: its live tile and its flights, newest first, a page at a time.

import { api, ApiError, Drone, FlightSummary } from "../api";
import { h, mount } from "../dom";
import { duration, num, shortId, when, withUnit } from "../format";
import { LiveTile } from "../tile";
import { seedLive } from "./fleet";
import type { ViewContext } from "../app";

const PAGE = 20;
/** The first page is refreshed this often, so a flight that just closed shows up. */
const REFRESH_MS = 10_000;

export function droneView(root: HTMLElement, ctx: ViewContext, droneId: string, offset: number): () => void {
  let disposed = false;
  let tile: LiveTile | null = null;
  const cleanups: (() => void)[] = [];
  const title = h("h1", {}, "Drone");
  const sub = h("p", { class: "sub" });
  const liveSlot = h("div", { class: "live-slot" });
  const flightsBody = h("div", { class: "loading" }, "Loading flights…");
  const pager = h("nav", { class: "pager", "aria-label": "flight pages" });
  mount(
    root,
    h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "Fleet"), h("span", {}, " / "), h("span", { id: "crumb-drone" }, "Drone")),
    h("div", { class: "page-head" }, title, sub),
    liveSlot,
    h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Flights"), pager), flightsBody),
  );

  api.drone(droneId).then(
    (drone) => {
      if (disposed) return;
      showDrone(drone);
    },
    (failure: unknown) => {
      if (disposed) return;
      const message = failure instanceof ApiError && failure.status === 404
        ? "This drone does not exist, or it is not yours."
        : `Could not load the drone: ${(failure as Error).message}`;
      mount(root, h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "Fleet")), h("div", { class: "error-box", role: "alert" }, message));
    },
  );

  function showDrone(drone: Drone) {
    title.textContent = drone.name;
    document.getElementById("crumb-drone")!.textContent = drone.name;
    mount(sub, "ID ", h("code", {}, drone.id), ` · registered ${when(drone.created_at)}`);
    tile = new LiveTile(drone, { link: false, wide: true });
    mount(liveSlot, tile.element);
    const known = ctx.hub.get(drone.id);
    if (known) tile.update(known);
    else seedLive(ctx.hub, drone.id);
    cleanups.push(ctx.hub.subscribe((packet) => packet.drone_id === drone.id && tile!.update(packet)));
    const ticker = window.setInterval(() => tile!.tick(Date.now()), 250);
    cleanups.push(() => window.clearInterval(ticker));
    loadFlights();
    if (offset === 0) {
      const refresher = window.setInterval(() => loadFlights(true), REFRESH_MS);
      cleanups.push(() => window.clearInterval(refresher));
    }
  }

  async function loadFlights(quiet = false) {
    let page: FlightSummary[];
    try {
      // one more than a page tells whether an older page exists
      page = await api.flights(droneId, PAGE + 1, offset);
    } catch (failure) {
      if (disposed) return;
      if (quiet) ctx.notify(`Could not refresh flights: ${(failure as Error).message}`, "error");
      else mount(flightsBody, h("div", { class: "error-box", role: "alert" }, `Could not load flights: ${(failure as Error).message}`));
      return;
    }
    if (disposed) return;
    const hasOlder = page.length > PAGE;
    const rows = page.slice(0, PAGE);
    renderPager(rows.length, hasOlder);
    if (rows.length === 0) {
      flightsBody.className = "";
      mount(
        flightsBody,
        h("div", { class: "empty" }, h("h2", {}, offset === 0 ? "No flights yet" : "No flights on this page"),
          h("p", {}, offset === 0
            ? "A flight appears here a few seconds after the drone lands (10 s of idle throttle closes it)."
            : "Go back to newer flights.")),
      );
      return;
    }
    flightsBody.className = "table-wrap";
    mount(flightsBody, flightsTable(rows));
  }

  function renderPager(shown: number, hasOlder: boolean) {
    const link = (label: string, to: number | null, rel: string) =>
      to === null
        ? h("span", { class: "button disabled", "aria-disabled": "true" }, label)
        : h("a", { class: "button", href: `#/drones/${droneId}${to ? `?offset=${to}` : ""}`, rel }, label);
    const range = shown ? `${offset + 1}–${offset + shown}` : "";
    mount(
      pager,
      link("← Newer", offset > 0 ? Math.max(0, offset - PAGE) : null, "prev"),
      h("span", { class: "range" }, range),
      link("Older →", hasOlder ? offset + PAGE : null, "next"),
    );
  }

  return () => {
    disposed = true;
    for (const cleanup of cleanups) cleanup();
  };
}

function statusBadge(status: string) {
  return h("span", { class: `badge status-${status}` }, status);
}

function flightsTable(flights: FlightSummary[]) {
  const head = ["Start", "Duration", "Packets", "Energy", "Charge", "Min voltage", "Max current", "Distance", "Analytics"];
  return h(
    "table",
    { class: "flights", id: "flights" },
    h("thead", {}, h("tr", {}, ...head.map((label, i) => h("th", { class: i > 0 && i < 8 ? "num" : "" }, label)))),
    h(
      "tbody",
      {},
      ...flights.map((flight) => {
        const href = `#/flights/${flight.id}`;
        return h(
          "tr",
          { dataset: { flightId: flight.id }, onclick: () => (location.hash = href) },
          h("td", {}, h("a", { href, title: `flight ${flight.id}` }, when(flight.start_ts)), h("span", { class: "muted id" }, ` ${shortId(flight.id)}`)),
          h("td", { class: "num" }, duration(flight.duration_s ?? (Date.parse(flight.end_ts) - Date.parse(flight.start_ts)) / 1000)),
          h("td", { class: "num" }, num(flight.packet_count, 0)),
          h("td", { class: "num" }, withUnit(flight.energy_wh, "Wh", 2)),
          h("td", { class: "num" }, withUnit(flight.total_mah, "mAh", 0)),
          h("td", { class: "num" }, withUnit(flight.min_voltage, "V", 2)),
          h("td", { class: "num" }, withUnit(flight.max_current, "A", 1)),
          h("td", { class: "num" }, withUnit(flight.distance_m, "m", 0)),
          h("td", {}, statusBadge(flight.analytics_status)),
        );
      }),
    ),
  );
}
