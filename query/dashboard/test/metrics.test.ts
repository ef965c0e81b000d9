import assert from "node:assert/strict";
import { test } from "node:test";
import { DASH } from "../src/format";
import { GROUPS, lookup, metricSections, powerCurveRows, show, type MetricRow } from "../src/metrics";

const sample: Record<string, unknown> = {
  energy_wh: 12.3456,
  total_mah: 850.4,
  min_voltage: 14.2,
  max_voltage: null,
  duration_s: 125,
  packet_count: 2500,
  gaps: { count: 2, seconds: 3.26 },
  attitude_std_deg: { roll: 1.234, pitch: null },
  pilot_fingerprint: null,
  power_curve: [],
  analytics_version: 3,
  future_metric: 1.23456,
  nested_future: { a: 1 },
  label_future: "ok",
};

function row(key: string): MetricRow {
  for (const section of metricSections(sample)) {
    const found = section.rows.find((r) => r.key === key);
    if (found) return found;
  }
  throw new Error(`no row ${key}`);
}

test("lookup follows dotted paths and stops at absent or non-object steps", () => {
  assert.equal(lookup(sample, "energy_wh"), 12.3456);
  assert.equal(lookup(sample, "gaps.count"), 2);
  assert.equal(lookup(sample, "attitude_std_deg.pitch"), null);
  assert.equal(lookup(sample, "pilot_fingerprint.throttle_p10"), undefined);
  assert.equal(lookup(sample, "energy_wh.deeper"), undefined);
  assert.equal(lookup(sample, "missing"), undefined);
});

test("show: units, degrees without a space, dashes for null, JSON for objects", () => {
  assert.equal(show(14.2, "V", 2), "14.20 V");
  assert.equal(show(1.234, "°", 2), "1.23°");
  assert.equal(show(2500, "", 0), "2,500");
  assert.equal(show(null, "V", 2), DASH);
  assert.equal(show(undefined, "V", 2), DASH);
  assert.equal(show({ a: 1 }, "", 3), '{"a":1}');
  assert.equal(show("ok", "", 3), "ok");
  assert.equal(show(true, "", 3), "true");
});

test("metric sections: the three groups in order, then the unknown keys", () => {
  const sections = metricSections(sample);
  assert.deepEqual(
    sections.map((s) => s.title),
    ["Battery and energy", "Flight", "Piloting", "Other"],
  );
  for (const [i, group] of GROUPS.entries()) {
    assert.deepEqual(sections[i].rows.map((r) => r.key), group.metrics.map((m) => m.key));
  }
});

test("metric rows: values with their units and precision", () => {
  assert.deepEqual(row("energy_wh"), {
    key: "energy_wh",
    label: "Energy",
    help: "∫ voltage·current dt / 3600",
    value: 12.3456,
    text: "12.35 Wh",
  });
  assert.equal(row("total_mah").text, "850 mAh");
  assert.equal(row("min_voltage").text, "14.20 V");
  assert.equal(row("duration_s").text, "125.0 s");
  assert.equal(row("packet_count").text, "2,500");
  assert.equal(row("gaps.count").text, "2");
  assert.equal(row("gaps.seconds").text, "3.3 s");
  assert.equal(row("attitude_std_deg.roll").text, "1.23°");
});

test("metric rows: null and absent metrics show a dash and keep their value", () => {
  assert.equal(row("max_voltage").value, null);
  assert.equal(row("max_voltage").text, DASH);
  assert.equal(row("attitude_std_deg.pitch").text, DASH);
  assert.equal(row("mah_drawn_delta").value, undefined);
  assert.equal(row("mah_drawn_delta").text, DASH);
  assert.equal(row("pilot_fingerprint.throttle_p50").text, DASH);
});

test("metric rows: unknown keys sorted under Other; power_curve and analytics_version left out", () => {
  const other = metricSections(sample).at(-1)!;
  assert.equal(other.title, "Other");
  assert.deepEqual(other.rows, [
    { key: "future_metric", label: "future_metric", help: "", value: 1.23456, text: "1.235" },
    { key: "label_future", label: "label_future", help: "", value: "ok", text: "ok" },
    { key: "nested_future", label: "nested_future", help: "", value: { a: 1 }, text: '{"a":1}' },
  ]);
});

test("metric sections: no Other section when every key is known", () => {
  const sections = metricSections({ energy_wh: 1, gaps: { count: 0 }, power_curve: [], analytics_version: 1 });
  assert.deepEqual(sections.map((s) => s.title), ["Battery and energy", "Flight", "Piloting"]);
});

test("power curve rows: deciles, units, bars relative to the highest power", () => {
  const rows = powerCurveRows({
    power_curve: [
      { bin_start: 0.3, mean_power_w: 150, mean_current_a: 9.87, seconds: 12.34 },
      { bin_start: 0.4, mean_power_w: 300, mean_current_a: 19.5, seconds: 4 },
      { bin_start: 0.5, mean_power_w: null, mean_current_a: null, seconds: null },
    ],
  });
  assert.deepEqual(rows, [
    { throttle: "30–40 %", power: "150 W", current: "9.9 A", time: "12.3 s", barPercent: 50 },
    { throttle: "40–50 %", power: "300 W", current: "19.5 A", time: "4.0 s", barPercent: 100 },
    { throttle: "50–60 %", power: DASH, current: DASH, time: DASH, barPercent: 0 },
  ]);
});

test("power curve rows: bars scale against at least 1 W", () => {
  const rows = powerCurveRows({ power_curve: [{ bin_start: 0, mean_power_w: 0.5, mean_current_a: 0.1, seconds: 1 }] });
  assert.equal(rows?.[0].barPercent, 50);
});

test("power curve rows: null without bins", () => {
  assert.equal(powerCurveRows({}), null);
  assert.equal(powerCurveRows({ power_curve: [] }), null);
  assert.equal(powerCurveRows({ power_curve: "not a list" }), null);
  assert.equal(powerCurveRows(sample), null);
});
