// A flight: key figures, charts of its downsampled telemetry, the metrics table, CSV export and
// a recompute button.

import { api, ApiError, FlightDetail, Packet, tsMillis } from "../api";
import { Disposable, flightSeries, palette, sagChart, timeChart, trackChart, trackFrom } from "../charts";
import { h, mount } from "../dom";
import { duration, flightRule, num, when, withUnit } from "../format";
import { metricsTable, powerCurveTable } from "../metrics";
import type { ViewContext } from "../app";

/** While analytics is pending (or after a recompute), the metrics are re-read this often… */
const POLL_MS = 3_000;
/** …for at most this long. */
const POLL_FOR_MS = 90_000;

export function flightView(root: HTMLElement, ctx: ViewContext, flightId: string): () => void {
  let disposed = false;
  const charts: Disposable[] = [];
  let pollTimer: number | undefined;
  mount(root, h("div", { class: "loading" }, "Loading flight…"));

  api.flight(flightId, true).then(
    (flight) => !disposed && render(flight),
    (failure: unknown) => {
      if (disposed) return;
      const message = failure instanceof ApiError && failure.status === 404
        ? "This flight does not exist, or it belongs to another account."
        : `Could not load the flight: ${(failure as Error).message}`;
      mount(root, h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "Fleet")), h("div", { class: "error-box", role: "alert" }, message));
    },
  );

  const statusSlot = h("span");
  const ruleSlot = h("p", { class: "sub", id: "flight-rule" });
  const kpiSlot = h("div", { class: "kpis" });
  const metricsSlot = h("div");
  const powerCurveSlot = h("div");

  function render(flight: FlightDetail) {
    const droneCrumb = h("a", { href: `#/drones/${flight.drone_id}` }, "Drone");
    api.drone(flight.drone_id).then((drone) => (droneCrumb.textContent = drone.name), () => {});
    const csvButton = h("button", { type: "button", id: "download-csv" }, "Download CSV");
    const recomputeButton = h("button", { type: "button", id: "recompute" }, "Recompute analytics");
    csvButton.addEventListener("click", () => downloadCsv(csvButton));
    recomputeButton.addEventListener("click", () => recompute(recomputeButton));

    const points = flight.telemetry ?? [];
    const chartsSection = h("section", { class: "chart-grid", id: "charts" });
    mount(
      root,
      h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "Fleet"), h("span", {}, " / "), droneCrumb, h("span", {}, " / "), h("span", {}, "Flight")),
      h(
        "div",
        { class: "page-head with-actions" },
        h("div", {}, h("h1", {}, `Flight ${when(flight.start_ts)}`, " ", statusSlot),
          h("p", { class: "sub" }, "ID ", h("code", {}, flight.id), ` · ${when(flight.start_ts)} → ${when(flight.end_ts)}`),
          ruleSlot),
        h("div", { class: "actions" }, csvButton, recomputeButton),
      ),
      kpiSlot,
      chartsSection,
      h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Metrics"),
        h("span", { class: "muted" }, "Hover a name for its definition (CONTRACT §4)")), metricsSlot),
    );
    showSummary(flight);
    renderCharts(chartsSection, points, flight);
  }

  function showSummary(flight: FlightDetail) {
    mount(statusSlot, h("span", { class: `badge status-${flight.analytics_status}`, id: "analytics-status" }, `analytics ${flight.analytics_status}`));
    const version = flight.analytics_version === null ? "analytics version —" : `analytics version ${flight.analytics_version}`;
    mount(ruleSlot, h("span", { title: "the flight rule this flight was cut with (CONTRACT §3)" }, `Flight rule: ${flightRule(flight.rule)}`), ` · ${version}`);
    const fallbackDuration = (tsMillis(flight.end_ts) - tsMillis(flight.start_ts)) / 1000;
    const kpi = (label: string, value: string) => h("div", { class: "kpi" }, h("span", { class: "label" }, label), h("span", { class: "value" }, value));
    mount(
      kpiSlot,
      kpi("Duration", duration(flight.duration_s ?? fallbackDuration)),
      kpi("Energy", withUnit(flight.energy_wh, "Wh", 2)),
      kpi("Charge", withUnit(flight.total_mah, "mAh", 0)),
      kpi("Distance", withUnit(flight.distance_m, "m", 0)),
      kpi("Min voltage", withUnit(flight.min_voltage, "V", 2)),
      kpi("Max current", withUnit(flight.max_current, "A", 1)),
      kpi("Packets", num(flight.packet_count, 0)),
    );
    const metrics = flight.computed_metrics;
    if (metrics && Object.keys(metrics).length) {
      mount(metricsSlot, metricsTable(metrics));
      const curve = powerCurveTable(metrics);
      mount(powerCurveSlot, curve ?? h("p", { class: "empty small" }, "No throttle bins."));
    } else {
      const text = flight.analytics_status === "failed"
        ? "Analytics failed for this flight. Try “Recompute analytics”."
        : "Analytics pending: the metrics appear here once the analytics processor has measured this flight.";
      mount(metricsSlot, h("div", { class: "empty", id: "metrics-pending" }, h("p", {}, text)));
      mount(powerCurveSlot, h("p", { class: "empty small" }, "Waits for analytics."));
      if (flight.analytics_status === "pending") pollMetrics(Date.now() + POLL_FOR_MS);
    }
  }

  function pollMetrics(until: number, baseline?: string) {
    window.clearTimeout(pollTimer);
    pollTimer = window.setTimeout(async () => {
      if (disposed) return;
      try {
        const flight = await api.flight(flightId, false);
        if (disposed) return;
        const fingerprint = JSON.stringify([flight.analytics_status, flight.analytics_version, flight.computed_metrics]);
        if (baseline === undefined || fingerprint !== baseline) showSummary(flight);
        const settled = baseline === undefined ? flight.analytics_status !== "pending" : fingerprint !== baseline;
        if (!settled && Date.now() < until) pollMetrics(until, baseline);
      } catch {
        if (Date.now() < until) pollMetrics(until, baseline);
      }
    }, POLL_MS);
  }

  async function downloadCsv(button: HTMLButtonElement) {
    button.disabled = true;
    button.textContent = "Downloading…";
    try {
      const blob = await api.csv(flightId);
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: `flight-${flightId}.csv` });
      document.body.appendChild(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (failure) {
      ctx.notify(`CSV export failed: ${(failure as Error).message}`, "error");
    } finally {
      button.disabled = false;
      button.textContent = "Download CSV";
    }
  }

  async function recompute(button: HTMLButtonElement) {
    button.disabled = true;
    try {
      const before = await api.flight(flightId, false);
      await api.recompute(flightId);
      ctx.notify("Recompute requested: the metrics refresh when the analytics processor is done.", "info");
      pollMetrics(Date.now() + POLL_FOR_MS, JSON.stringify([before.analytics_status, before.analytics_version, before.computed_metrics]));
    } catch (failure) {
      ctx.notify(`Recompute failed: ${(failure as Error).message}`, "error");
    } finally {
      window.setTimeout(() => (button.disabled = false), 2_000);
    }
  }

  function renderCharts(section: HTMLElement, points: Packet[], flight: FlightDetail) {
    if (points.length < 2) {
      mount(section, h("div", { class: "card span-2 empty" }, h("h2", {}, "No telemetry to chart"),
        h("p", {}, points.length === 0 ? "This flight has no stored telemetry points." : "This flight has a single telemetry point.")));
      return;
    }
    const colors = palette();
    // yaw is a heading in [0, 360), drawn as dots so a wrap is not a line across the chart
    const { xs, voltage, current, power, throttle, roll, pitch, yaw } = flightSeries(points, flight.start_ts);

    const card = (name: string, title: string, note: string, wide = false) => {
      const body = h("div", { class: "chart", dataset: { chart: name } });
      section.appendChild(h("section", { class: `card chart-card${wide ? " span-2" : ""}` },
        h("div", { class: "card-head" }, h("h2", {}, title), note ? h("span", { class: "muted" }, note) : null), body));
      return body;
    };
    const missing = (body: HTMLElement, what: string) => body.appendChild(h("p", { class: "empty small" }, `No ${what} in this flight.`));
    const has = (values: (number | null)[]) => values.some((v) => v !== null);

    const metrics = flight.computed_metrics ?? {};
    const powerBody = card("power", "Power", `${withUnit(flight.energy_wh, "Wh", 2)} over ${duration(flight.duration_s)}`, true);
    if (has(power)) charts.push(timeChart(powerBody, xs, [{ label: "Power", unit: "W", values: power, color: colors.purple, scale: "W", digits: 0 }], [{ scale: "W", label: "power (W)" }]));
    else missing(powerBody, "voltage and current");

    const viBody = card("voltage-current", "Voltage and current", "");
    if (has(voltage) || has(current)) {
      charts.push(timeChart(viBody, xs, [
        { label: "Voltage", unit: "V", values: voltage, color: colors.blue, scale: "V", digits: 2 },
        { label: "Current", unit: "A", values: current, color: colors.orange, scale: "A", digits: 1 },
      ], [{ scale: "V", label: "voltage (V)" }, { scale: "A", label: "current (A)", side: "right" }]));
    } else missing(viBody, "voltage or current");

    const sag = metrics.voltage_sag_v as number | null | undefined;
    const resistance = metrics.internal_resistance_mohm as number | null | undefined;
    const sagBody = card("voltage-sag", "Voltage sag", `sag ${withUnit(sag, "V", 2)} · internal resistance ${withUnit(resistance, "mΩ", 1)}`);
    const pairs = points.filter((p) => p.voltage !== undefined && p.current !== undefined);
    if (pairs.length >= 2) charts.push(sagChart(sagBody, pairs.map((p) => p.current!), pairs.map((p) => p.voltage!)));
    else missing(sagBody, "voltage and current pairs");

    const throttleMean = typeof metrics.throttle_mean === "number" ? metrics.throttle_mean * 100 : null;
    const throttleBody = card("throttle", "Throttle", `mean ${withUnit(throttleMean, "%", 0)}`);
    charts.push(timeChart(throttleBody, xs, [{ label: "Throttle", unit: "%", values: throttle, color: colors.green, scale: "%", digits: 0 }], [{ scale: "%", label: "throttle (%)", range: [0, 100] }]));

    const attitudeBody = card("attitude", "Attitude", "roll and pitch left, yaw right");
    if (has(roll)) {
      charts.push(timeChart(attitudeBody, xs, [
        { label: "Roll", unit: "°", values: roll, color: colors.blue, scale: "deg", digits: 1 },
        { label: "Pitch", unit: "°", values: pitch, color: colors.orange, scale: "deg", digits: 1 },
        { label: "Yaw", unit: "°", values: yaw, color: colors.purple, scale: "yaw", digits: 0, dots: true },
      ], [{ scale: "deg", label: "roll, pitch (°)" }, { scale: "yaw", label: "yaw (°)", side: "right", range: [0, 360], ticks: [0, 90, 180, 270, 360] }]));
    } else missing(attitudeBody, "attitude");

    const { track, source } = trackFrom(points);
    const trackBody = card("track", "Track", source === "gps" ? "from GPS, north up" : source === "position" ? "local x/y (east/north), north up" : "");
    if (track.length >= 2) charts.push(trackChart(trackBody, track));
    else missing(trackBody, "position or GPS");

    section.appendChild(h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Power by throttle"),
      h("span", { class: "muted" }, "power_curve")), powerCurveSlot));
  }

  return () => {
    disposed = true;
    window.clearTimeout(pollTimer);
    for (const chart of charts) chart.dispose();
  };
}
