import assert from "node:assert/strict";
import { test } from "node:test";
import type { Packet } from "../src/api";
import { DASH } from "../src/format";
import { linkState, readout, throttleBarPercent } from "../src/tile";

test("readout of a full packet", () => {
  const packet: Packet = {
    drone_id: "d1",
    ts: "2024-05-01T12:00:00Z",
    throttle: 0.42,
    voltage: 16.8,
    current: 12.5,
    rssi: -67,
    attitude: [-3.24, 10.04, -90],
    extra: { mode: "ANGLE" },
  };
  assert.deepEqual(readout(packet), {
    voltage: "16.80 V",
    current: "12.5 A",
    power: "210 W",
    rssi: "-67",
    throttle: "42 %",
    roll: "-3.2°",
    pitch: "10.0°",
    yaw: "270°",
    mode: "ANGLE",
  });
});

test("readout of a bare packet: dashes, and no mode", () => {
  assert.deepEqual(readout({ ts: 0, throttle: 0 }), {
    voltage: DASH,
    current: DASH,
    power: DASH,
    rssi: DASH,
    throttle: "0 %",
    roll: DASH,
    pitch: DASH,
    yaw: DASH,
    mode: "",
  });
});

test("readout: power needs both voltage and current; a heading wraps past 360", () => {
  const texts = readout({ ts: 0, throttle: 1, voltage: 15, attitude: [0, 0, 725], extra: { mode: 3 } });
  assert.equal(texts.voltage, "15.00 V");
  assert.equal(texts.current, DASH);
  assert.equal(texts.power, DASH);
  assert.equal(texts.yaw, "5°");
  assert.equal(texts.mode, "3");
});

test("throttle bar is clamped to 0–100 %", () => {
  assert.equal(throttleBarPercent(0.25), 25);
  assert.equal(throttleBarPercent(1.3), 100);
  assert.equal(throttleBarPercent(-0.2), 0);
});

test("link state: live under 3 s, stale under 30 s, then offline", () => {
  assert.equal(linkState(0), "live");
  assert.equal(linkState(2_999), "live");
  assert.equal(linkState(3_000), "stale");
  assert.equal(linkState(29_999), "stale");
  assert.equal(linkState(30_000), "offline");
});
