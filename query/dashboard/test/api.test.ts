import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { ApiError, liveStreamUrl, session, tsMillis } from "../src/api";

/** sessionStorage for node: the session reads it on every call. */
class MemoryStorage implements Storage {
  private readonly items = new Map<string, string>();
  get length(): number {
    return this.items.size;
  }
  clear(): void {
    this.items.clear();
  }
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  key(index: number): string | null {
    return [...this.items.keys()][index] ?? null;
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
  setItem(key: string, value: string): void {
    this.items.set(key, String(value));
  }
}

const storage = new MemoryStorage();
Object.defineProperty(globalThis, "sessionStorage", { value: storage, configurable: true });
beforeEach(() => storage.clear());

test("tsMillis takes epoch milliseconds or an ISO timestamp", () => {
  assert.equal(tsMillis(1_714_564_800_000), 1_714_564_800_000);
  assert.equal(tsMillis("2024-05-01T12:00:00Z"), 1_714_564_800_000);
  assert.equal(tsMillis("2024-05-01T12:00:00.250+02:00"), 1_714_557_600_250);
  assert.ok(Number.isNaN(tsMillis("not a time")));
});

test("the live stream URL carries the encoded token and the rate", () => {
  assert.equal(liveStreamUrl(5), "/v1/live/stream?access_token=&max_hz=5");
  session.save("a b/c+d", "pilot@example.com", 3600);
  assert.equal(liveStreamUrl(5), "/v1/live/stream?access_token=a%20b%2Fc%2Bd&max_hz=5");
});

test("the session keeps the token and email until it expires", () => {
  assert.equal(session.token, null);
  assert.equal(session.email, "");
  session.save("tok", "pilot@example.com", 3600);
  assert.equal(session.token, "tok");
  assert.equal(session.email, "pilot@example.com");
  session.clear();
  assert.equal(session.token, null);
  assert.equal(storage.length, 0);
});

test("an expired session is cleared when its token is read", () => {
  session.save("old", "pilot@example.com", -1);
  assert.equal(session.token, null);
  assert.equal(session.email, "");
  assert.equal(storage.length, 0);
});

test("ApiError keeps the status and error code", () => {
  const error = new ApiError(409, "conflict", "already exists");
  assert.ok(error instanceof Error);
  assert.equal(error.status, 409);
  assert.equal(error.code, "conflict");
  assert.equal(error.message, "already exists");
});
