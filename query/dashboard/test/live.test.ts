import assert from "node:assert/strict";
import { test } from "node:test";
import type { Packet } from "../src/api";
import { LiveHub, parsePacket, type LiveStatus } from "../src/live";

test("parsePacket reads a telemetry event's JSON", () => {
  const data = '{"drone_id":"d1","ts":"2024-05-01T12:00:00Z","throttle":0.5,"voltage":16.8,"attitude":[1,2,3]}';
  assert.deepEqual(parsePacket(data), {
    drone_id: "d1",
    ts: "2024-05-01T12:00:00Z",
    throttle: 0.5,
    voltage: 16.8,
    attitude: [1, 2, 3],
  });
});

test("parsePacket ignores what is not a JSON object", () => {
  assert.equal(parsePacket("not json"), null);
  assert.equal(parsePacket(""), null);
  assert.equal(parsePacket('{"truncated":'), null);
  assert.equal(parsePacket("null"), null);
  assert.equal(parsePacket("42"), null);
});

const packet = (droneId: string | undefined, ts: string | number, throttle = 0.5): Packet => ({ drone_id: droneId, ts, throttle });

test("the hub keeps each drone's newest packet and tells the subscribers", () => {
  const hub = new LiveHub();
  const seen: Packet[] = [];
  const unsubscribe = hub.subscribe((p) => seen.push(p));

  hub.accept(packet("d1", "2024-05-01T12:00:01Z", 0.1));
  hub.accept(packet("d2", 1_714_564_800_000, 0.2));
  hub.accept(packet("d1", "2024-05-01T12:00:00Z", 0.3)); // older: ignored
  hub.accept(packet(undefined, "2024-05-01T12:00:05Z", 0.4)); // no drone: ignored
  hub.accept(packet("d1", "2024-05-01T12:00:01Z", 0.5)); // same time: taken
  assert.deepEqual(seen.map((p) => p.throttle), [0.1, 0.2, 0.5]);
  assert.equal(hub.get("d1")?.throttle, 0.5);
  assert.equal(hub.get("d2")?.throttle, 0.2);
  assert.equal(hub.get("d3"), undefined);

  unsubscribe();
  hub.accept(packet("d1", "2024-05-01T12:00:02Z", 0.6));
  assert.equal(seen.length, 3);
  assert.equal(hub.get("d1")?.throttle, 0.6);
});

test("a status listener hears the current status at once", () => {
  const hub = new LiveHub();
  const statuses: LiveStatus[] = [];
  const off = hub.onStatus((status) => statuses.push(status));
  assert.deepEqual(statuses, ["stopped"]);
  off();
});
