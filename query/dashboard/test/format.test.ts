import assert from "node:assert/strict";
import { test } from "node:test";
import { age, clock, DASH, duration, flightRule, heading, num, percent, shortId, when, withUnit } from "../src/format";

test("num rounds to the given digits with thousands separators", () => {
  assert.equal(num(16.8, 2), "16.80");
  assert.equal(num(3), "3.0");
  assert.equal(num(1234.56, 1), "1,234.6");
  assert.equal(num(850.4, 0), "850");
  assert.equal(num(-12.25, 1), "-12.3");
});

test("num prints no negative zero for a value that rounds to zero", () => {
  assert.equal(num(-0.04, 1), "0.0");
  assert.equal(num(-0.004, 2), "0.00");
  assert.equal(num(-0.06, 1), "-0.1");
});

test("num prints absent and non-finite values as a dash", () => {
  assert.equal(DASH, "—");
  assert.equal(num(null), DASH);
  assert.equal(num(undefined, 2), DASH);
  assert.equal(num(Number.NaN), DASH);
  assert.equal(num(Number.POSITIVE_INFINITY), DASH);
});

test("withUnit appends the unit, except to a dash or for no unit", () => {
  assert.equal(withUnit(16.8, "V", 2), "16.80 V");
  assert.equal(withUnit(12.5, "A"), "12.5 A");
  assert.equal(withUnit(null, "V", 2), DASH);
  assert.equal(withUnit(Number.NaN, "Wh"), DASH);
  assert.equal(withUnit(5, "", 0), "5");
});

test("percent shows a 0–1 fraction as a whole percentage", () => {
  assert.equal(percent(0.42), "42 %");
  assert.equal(percent(0), "0 %");
  assert.equal(percent(1), "100 %");
  assert.equal(percent(undefined), DASH);
  assert.equal(percent(Number.NaN), DASH);
});

test("duration: seconds, then minutes and seconds, then hours and minutes", () => {
  assert.equal(duration(5.2), "5.2 s");
  assert.equal(duration(42.4), "42 s");
  assert.equal(duration(245), "4 min 05 s");
  assert.equal(duration(3725), "1 h 02 min");
  assert.equal(duration(null), DASH);
  assert.equal(duration(Number.POSITIVE_INFINITY), DASH);
});

test("age: how long ago, coarser as it grows, never negative", () => {
  assert.equal(age(400), "0.4 s ago");
  assert.equal(age(-50), "0.0 s ago");
  assert.equal(age(12_000), "12 s ago");
  assert.equal(age(180_000), "3 min ago");
  assert.equal(age(3 * 3_600_000), "3 h ago");
  assert.equal(age(3 * 86_400_000), "3 d ago");
});

test("heading wraps an angle into [0, 360)", () => {
  assert.equal(heading(-90), 270);
  assert.equal(heading(370), 10);
  assert.equal(heading(0), 0);
  assert.equal(heading(360), 0);
  assert.equal(heading(-720), 0);
  assert.equal(heading(179.5), 179.5);
});

test("when and clock: a dash for nothing, the input back for an unparsable date", () => {
  assert.equal(when(null), DASH);
  assert.equal(when(undefined), DASH);
  assert.equal(when("not a date"), "not a date");
  assert.equal(clock("soon"), "soon");
  assert.match(when("2024-05-01T12:00:00Z"), /2024/);
});

test("shortId keeps the first 8 characters", () => {
  assert.equal(shortId("0b6f2c1e-9d7a-4a53-8e1f-2f0c3b4d5e6f"), "0b6f2c1e");
  assert.equal(shortId("abc"), "abc");
});

test("flightRule shows the rule a flight was cut with, compactly", () => {
  assert.equal(flightRule({ throttle_threshold: 0.05, idle_s: 10, gap_s: 10, min_s: 1 }), "throttle ≥ 5 % · idle 10 s · gap 10 s · min 1 s");
  assert.equal(flightRule({ throttle_threshold: 0.025, idle_s: 5.5, gap_s: 7, min_s: 0 }), "throttle ≥ 2.5 % · idle 5.5 s · gap 7 s · min 0 s");
  assert.equal(flightRule(undefined), DASH);
});
