import assert from "node:assert/strict";
import { test } from "node:test";
import type { Packet } from "../src/api";
import { flightSeries, leastSquares, niceStep, trackFrom } from "../src/charts";

const close = (actual: number, expected: number, epsilon = 1e-9) =>
  assert.ok(Math.abs(actual - expected) <= epsilon, `${actual} is not within ${epsilon} of ${expected}`);

test("least squares recovers a line's intercept and slope", () => {
  const xs = [0, 10, 20, 30];
  const fit = leastSquares(xs, xs.map((x) => 16.8 - 0.02 * x));
  assert.ok(fit);
  close(fit.intercept, 16.8);
  close(fit.slope, -0.02);
});

test("least squares of noisy points", () => {
  const fit = leastSquares([1, 2, 3], [1, 2, 2]);
  assert.ok(fit);
  close(fit.slope, 0.5);
  close(fit.intercept, 2 / 3);
});

test("least squares needs two distinct x", () => {
  assert.equal(leastSquares([], []), null);
  assert.equal(leastSquares([5], [1]), null);
  assert.equal(leastSquares([5, 5, 5], [1, 2, 3]), null);
});

test("track from local positions, preferred over GPS", () => {
  const result = trackFrom([
    { position: [1, 2, 3], gps: { lat: 10, lon: 10 } },
    { position: [4, 5, 6] },
    { gps: { lat: 10.1, lon: 10 } },
  ]);
  assert.deepEqual(result, { track: [{ x: 1, y: 2 }, { x: 4, y: 5 }], source: "position" });
});

test("track from GPS, in metres around the first fix", () => {
  const { track, source } = trackFrom([
    { position: [0, 0, 0], gps: { lat: 0, lon: 0 } },
    { gps: { lat: 0, lon: 0.001 } },
    { gps: { lat: 0.001, lon: 0 } },
  ]);
  assert.equal(source, "gps");
  assert.equal(track.length, 3);
  assert.deepEqual(track[0], { x: 0, y: 0 });
  close(track[1].x, 111.195, 0.001); // 0.001° of longitude at the equator
  close(track[1].y, 0);
  close(track[2].x, 0);
  close(track[2].y, 111.195, 0.001);
});

test("track: east-west metres shrink with the cosine of the latitude", () => {
  const { track } = trackFrom([{ gps: { lat: 60, lon: 0 } }, { gps: { lat: 60, lon: 0.001 } }]);
  close(track[1].x, 111.195 / 2, 0.001);
});

test("no track from fewer than two fixes", () => {
  assert.deepEqual(trackFrom([]), { track: [], source: null });
  assert.deepEqual(trackFrom([{ position: [1, 1, 1] }, { gps: { lat: 1, lon: 1 } }]), { track: [], source: null });
});

test("grid steps are 1, 2 or 5 × 10^k", () => {
  assert.equal(niceStep(100, 10), 10);
  assert.equal(niceStep(37, 8), 5);
  assert.equal(niceStep(250, 10), 20);
  assert.equal(niceStep(0.9, 8), 0.1);
  assert.equal(niceStep(900, 1), 1000);
});

test("flight series: seconds since the start, units converted, gaps as null", () => {
  const points: Packet[] = [
    { ts: "2024-05-01T12:00:00.000Z", throttle: 0.5, voltage: 16, current: 10, attitude: [1, 2, -90] },
    { ts: "2024-05-01T12:00:01.500Z", throttle: 0.25, voltage: 15.5 },
    { ts: Date.parse("2024-05-01T12:00:03Z"), throttle: 1, current: 2, attitude: [-1, -2, 450] },
  ];
  assert.deepEqual(flightSeries(points, "2024-05-01T12:00:00Z"), {
    xs: [0, 1.5, 3],
    voltage: [16, 15.5, null],
    current: [10, null, 2],
    power: [160, null, null],
    throttle: [50, 25, 100],
    roll: [1, null, -1],
    pitch: [2, null, -2],
    yaw: [270, null, 90],
  });
});
