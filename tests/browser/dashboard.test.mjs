// End-to-end test of the Flightline dashboard in Debian's headless Chromium, driven by
// playwright-core. run.sh starts the product, signs a user up and flies simulated drones; this
// script then uses the dashboard as an operator would and fails (exit 1) at the first step that
// does not hold, with a screenshot of that moment.
//
// env: BASE_URL, TEST_EMAIL, TEST_PASSWORD (required); SCREENSHOT_DIR (default ./screenshots);
//      CHROMIUM (default /usr/bin/chromium); FLIGHT_WAIT_S (default 90): how long to wait for a
//      finished flight to be listed.

import { mkdtempSync, readFileSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} must be set (run.sh sets it)`);
  return value;
};
const BASE_URL = env("BASE_URL");
const EMAIL = env("TEST_EMAIL");
const PASSWORD = env("TEST_PASSWORD");
const SHOTS = env("SCREENSHOT_DIR", new URL("./screenshots", import.meta.url).pathname);
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const FLIGHT_WAIT_MS = Number(env("FLIGHT_WAIT_S", "90")) * 1000;

mkdirSync(SHOTS, { recursive: true });
const userDataDir = mkdtempSync(join(tmpdir(), "flightline-chromium-"));
const started = Date.now();
let passed = 0;
let context;
let page;
const consoleErrors = [];

class Failure extends Error {}
function check(condition, message) {
  if (!condition) throw new Failure(message);
}

async function step(name, body) {
  const t0 = Date.now();
  try {
    await body();
  } catch (error) {
    console.error(`not ok - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    console.error(`  ${error instanceof Failure ? error.message : error.stack ?? error}`);
    if (page) {
      await page.screenshot({ path: join(SHOTS, "failure.png"), fullPage: true }).catch(() => {});
      console.error(`  page: ${page.url()}; screenshot: ${join(SHOTS, "failure.png")}`);
    }
    console.error(`${passed} passed, 1 failed`);
    await finish(1);
  }
  passed += 1;
  console.log(`ok - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

async function finish(code) {
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
  process.exit(code);
}

const shot = async (name) => {
  await page.evaluate(() => window.scrollTo(0, 0)); // the sticky top bar belongs at the top
  await page.screenshot({ path: join(SHOTS, name), fullPage: true });
};
const text = (selector) => page.locator(selector).first().innerText();

await step("chromium starts", async () => {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    viewport: { width: 1366, height: 900 },
    acceptDownloads: true,
    timeout: 30_000,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15_000);
  page.on("pageerror", (error) => consoleErrors.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    // Chromium logs every 4xx/5xx response; the ones the test provokes on purpose are expected.
    if (/Failed to load resource: the server responded with a status of 401/.test(message.text())) return;
    consoleErrors.push(`console: ${message.text()}`);
  });
});

await step("the dashboard shows the sign-in form", async () => {
  const response = await page.goto(BASE_URL + "/");
  check(response?.status() === 200, `GET / answered ${response?.status()}`);
  await page.locator("#login-form").waitFor();
  check((await page.title()).includes("Flightline"), `unexpected title ${await page.title()}`);
  await shot("01-sign-in.png");
});

await step("a wrong password is refused with a message", async () => {
  await page.fill("#email", EMAIL);
  await page.fill("#password", "not-the-password");
  await page.click("#login-form button[type=submit]");
  const error = page.locator(".form-error");
  await error.waitFor({ state: "visible" });
  check(/wrong email or password/i.test(await error.innerText()), `error says: ${await error.innerText()}`);
  await shot("02-sign-in-error.png");
});

await step("signing in opens the fleet and stores the token in sessionStorage", async () => {
  await page.fill("#password", PASSWORD);
  await page.click("#login-form button[type=submit]");
  await page.locator("#fleet, .empty").first().waitFor();
  const token = await page.evaluate(() => sessionStorage.getItem("flightline.token"));
  check(typeof token === "string" && token.split(".").length === 3, "no JWT in sessionStorage after sign-in");
  await page.locator("#live-status.live").waitFor({ timeout: 15_000 });
});

let droneId;
let droneName;
await step("a simulated drone's live tile appears and its values change", async () => {
  const tile = page.locator(".tile.is-live").first();
  await tile.waitFor({ timeout: 30_000 });
  droneId = await tile.getAttribute("data-drone-id");
  droneName = await tile.locator(".name").innerText();
  const read = () =>
    tile.evaluate((element) =>
      ["voltage", "current", "throttle", "roll", "pitch", "yaw", "rssi"].map(
        (field) => element.querySelector(`[data-field=${field}]`)?.textContent ?? "",
      ),
    );
  const first = await read();
  check(first[0] !== "—" && /V$/.test(first[0]), `voltage not shown: ${first[0]}`);
  check(/%$/.test(first[2]), `throttle not shown: ${first[2]}`);
  let later = first;
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && JSON.stringify(later) === JSON.stringify(first)) {
    await page.waitForTimeout(250);
    later = await read();
  }
  check(JSON.stringify(later) !== JSON.stringify(first), `tile values did not change in 10 s: ${first.join(" ")}`);
  const age = await tile.locator("[data-field=age]").innerText();
  check(/ago$/.test(age), `last-seen age not shown: ${age}`);
  console.log(`  ${droneName}: ${first.join(" ")} → ${later.join(" ")} (${age})`);
  await shot("03-fleet.png");
});

await step("registering a drone shows its API key once and adds its tile", async () => {
  await page.click("#register-drone");
  await page.fill("#drone-name", "bench-spare");
  await page.click("#register-form button[type=submit]");
  const key = await page.locator("#new-api-key").innerText();
  check(key.trim().length >= 20, `API key shown is "${key}"`);
  const tile = page.locator(".tile", { hasText: "bench-spare" });
  await tile.waitFor();
  check(await tile.evaluate((element) => element.classList.contains("is-nodata")), "a drone that never flew is not marked as without data");
  await shot("04-register-drone.png");
  await page.click("#register-form button.ghost");
});

let flightHref;
await step("the drone page lists a finished flight", async () => {
  await page.click(`.tile[data-drone-id="${droneId}"] a.name`);
  await page.waitForURL(`**/#/drones/${droneId}`);
  await page.locator(".tile.wide").waitFor();
  check((await text("h1")) === droneName, `drone page title is ${await text("h1")}`);
  // The page refreshes its first page of flights every 10 s; a flight closes after landing.
  const row = page.locator("table#flights tbody tr").first();
  const deadline = Date.now() + FLIGHT_WAIT_MS;
  for (;;) {
    if (await row.isVisible()) break;
    check(Date.now() < deadline, `no flight listed after ${FLIGHT_WAIT_MS / 1000} s (empty state: ${await page.locator(".empty").count()})`);
    await page.waitForTimeout(1000);
  }
  const rows = await page.locator("table#flights tbody tr").count();
  check(rows >= 1, "flights table is empty");
  flightHref = await row.locator("a").first().getAttribute("href");
  check(/^#\/flights\/[0-9a-f-]{36}$/.test(flightHref ?? ""), `flight link is ${flightHref}`);
  check(await page.locator(".pager a[rel=next]").count() === 0, "an older page is offered with fewer than 20 flights");
  await shot("05-drone.png");
});

await step("the flight page draws its charts from telemetry", async () => {
  await page.click(`a[href="${flightHref}"]`);
  await page.locator("#charts").waitFor();
  for (const chart of ["power", "voltage-current", "voltage-sag", "throttle", "attitude", "track"]) {
    const canvas = page.locator(`.chart[data-chart="${chart}"] canvas`).first();
    check((await canvas.count()) === 1, `chart ${chart} has no canvas (${await page.locator(`.chart[data-chart="${chart}"]`).innerText()})`);
  }
  // Hovering a time chart puts the value under the cursor in its legend: the series has data.
  for (const chart of ["power", "voltage-current", "throttle", "attitude"]) {
    const over = page.locator(`.chart[data-chart="${chart}"] .u-over`);
    await over.scrollIntoViewIfNeeded();
    const box = await over.boundingBox();
    check(box !== null, `chart ${chart} has no plot area`);
    await page.mouse.move(box.x + box.width * 0.45, box.y + box.height / 2);
    const value = await page.locator(`.chart[data-chart="${chart}"] .u-series:nth-child(2) .u-value`).innerText();
    check(/\d/.test(value), `chart ${chart} shows no value under the cursor: "${value}"`);
  }
  // The track canvas has a drawn path (pixels of the series colour), not only its grid.
  const inked = await page.locator('.chart[data-chart="track"] canvas').evaluate((canvas) => {
    const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
    let count = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i + 2] > 150 && data[i] < 120 && data[i + 3] > 200) count++;
    return count;
  });
  check(inked > 100, `the track canvas has only ${inked} path pixels`);
  const points = await page.evaluate(async (href) => {
    const id = href.split("/").pop();
    const token = sessionStorage.getItem("flightline.token");
    const response = await fetch(`/v1/flights/${id}?include=telemetry&max_points=2000`, { headers: { authorization: `Bearer ${token}` } });
    return (await response.json()).telemetry?.length ?? 0;
  }, flightHref);
  check(points >= 20, `the flight has only ${points} telemetry points`);
  console.log(`  ${points} points charted`);
});

await step("the flight page shows the metrics table", async () => {
  // Analytics may still be running: the page re-reads the metrics every 3 s while pending.
  await page.locator("#metrics").waitFor({ timeout: 45_000 });
  const rows = await page.locator("#metrics tr[data-metric]").count();
  check(rows >= 10, `metrics table has ${rows} rows`);
  const duration = await page.locator('#metrics tr[data-metric="duration_s"] td').innerText();
  check(/\d.* s$/.test(duration), `duration metric is "${duration}"`);
  const status = await page.locator("#analytics-status").innerText();
  console.log(`  ${rows} metrics, duration ${duration}, ${status}`);
  await page.mouse.move(0, 0);
  await shot("06-flight.png");
});

await step("Download CSV saves every raw point of the flight", async () => {
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download-csv")]);
  check(download.suggestedFilename().endsWith(".csv"), `download is named ${download.suggestedFilename()}`);
  const path = await download.path();
  const lines = readFileSync(path, "utf8").trim().split(/\r?\n/);
  check(lines[0].startsWith("ts,received_at,throttle,voltage,current"), `CSV header is ${lines[0]}`);
  check(lines.length > 20, `CSV has ${lines.length - 1} rows`);
  console.log(`  ${lines.length - 1} rows`);
});

await step("Recompute is accepted and says so", async () => {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/recompute") && r.request().method() === "POST"),
    page.click("#recompute"),
  ]);
  check(response.status() === 202, `POST recompute answered ${response.status()}`);
  await page.locator(".toast", { hasText: "Recompute requested" }).waitFor();
});

await step("dark theme and a phone-sized fleet view render", async () => {
  await page.emulateMedia({ colorScheme: "dark" });
  await page.reload();
  await page.locator("#charts .u-over").first().waitFor();
  await page.locator("#metrics, #metrics-pending").first().waitFor({ timeout: 20_000 });
  await shot("07-flight-dark.png");
  await page.emulateMedia({ colorScheme: "light" });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(BASE_URL + "/#/");
  await page.locator(".tile.is-live").first().waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the fleet view is ${overflow}px wider than a phone screen`);
  await shot("08-fleet-phone.png");
  await page.setViewportSize({ width: 1366, height: 900 });
});

await step("an unknown flight shows an error, not a blank page", async () => {
  await page.goto(BASE_URL + "/#/flights/00000000-0000-0000-0000-000000000000");
  const error = page.locator(".error-box");
  await error.waitFor();
  check(/does not exist/.test(await error.innerText()), `error says: ${await error.innerText()}`);
});

await step("signing out returns to the sign-in form and forgets the token", async () => {
  await page.goto(BASE_URL + "/#/");
  await page.click("#sign-out");
  await page.locator("#login-form").waitFor();
  const token = await page.evaluate(() => sessionStorage.getItem("flightline.token"));
  check(token === null, "the token is still in sessionStorage");
});

await step("no script errors or CSP violations in the console", async () => {
  // 404s of the unknown-flight step are expected; anything else is a defect.
  const unexpected = consoleErrors.filter((line) => !/status of 404/.test(line));
  check(unexpected.length === 0, `console errors:\n    ${unexpected.join("\n    ")}`);
});

console.log(`screenshots in ${SHOTS}; ${((Date.now() - started) / 1000).toFixed(1)} s in the browser`);
console.log(`${passed} passed, 0 failed`);
await finish(0);
