// Flightline dashboard: hash routes, the signed-in session, the shared live stream, and
// notifications. Views render into <main> and return a function that releases what they hold.

import "uplot/dist/uPlot.min.css";
import "./app.css";

import { session, setUnauthorizedHandler } from "./api";
import { h, mount } from "./dom";
import { LiveHub, LiveStatus } from "./live";
import { droneView } from "./views/drone";
import { fleetView } from "./views/fleet";
import { flightView } from "./views/flight";
import { loginView } from "./views/login";

export interface ViewContext {
  hub: LiveHub;
  email: string;
  notify(message: string, kind: "info" | "error"): void;
}

const hub = new LiveHub();
const main = document.getElementById("view")!;
const toasts = document.getElementById("toasts")!;
const topbar = document.getElementById("topbar")!;
let dispose: (() => void) | void = undefined;
let unsubscribeStatus: () => void = () => {};

function notify(message: string, kind: "info" | "error"): void {
  const close = h("button", { type: "button", class: "toast-close", "aria-label": "dismiss" }, "×");
  const toast = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, h("span", {}, message), close);
  close.addEventListener("click", () => toast.remove());
  toasts.appendChild(toast);
  window.setTimeout(() => toast.remove(), kind === "error" ? 10_000 : 5_000);
}

const STATUS_TEXT: Record<LiveStatus, string> = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  stopped: "offline",
};

function renderTopbar(): void {
  unsubscribeStatus();
  if (!session.token) {
    topbar.hidden = true;
    return;
  }
  topbar.hidden = false;
  const status = h("span", { class: "live-status", id: "live-status", title: "live stream" });
  unsubscribeStatus = hub.onStatus((state) => {
    status.className = `live-status ${state}`;
    status.textContent = STATUS_TEXT[state];
  });
  const signOut = h("button", { type: "button", class: "ghost", id: "sign-out" }, "Sign out");
  signOut.addEventListener("click", () => signOutNow());
  mount(
    topbar,
    h("a", { class: "brand", href: "#/" }, h("span", { class: "logo", "aria-hidden": "true" }), "Flightline"),
    h("nav", { class: "main-nav" }, h("a", { href: "#/" }, "Fleet")),
    h("span", { class: "spacer" }),
    status,
    h("span", { class: "user" }, session.email),
    signOut,
  );
}

function signOutNow(notice?: string): void {
  session.clear();
  hub.stop();
  renderTopbar();
  route(notice);
}

setUnauthorizedHandler(() => {
  if (session.token) signOutNow("Your session has expired. Please sign in again.");
});

function route(notice?: string): void {
  if (dispose) dispose();
  dispose = undefined;
  window.scrollTo(0, 0);
  if (!session.token) {
    hub.stop();
    topbar.hidden = true;
    document.title = "Sign in · Flightline";
    loginView(main, () => {
      renderTopbar();
      hub.start();
      route();
    }, notice);
    return;
  }
  if (hub.status === "stopped") hub.start();
  const ctx: ViewContext = { hub, email: session.email, notify };
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query ?? "");
  const parts = path.split("/").filter(Boolean);
  for (const link of topbar.querySelectorAll<HTMLAnchorElement>(".main-nav a")) {
    link.classList.toggle("active", parts.length === 0);
  }
  if (parts[0] === "drones" && parts[1]) {
    document.title = "Drone · Flightline";
    const offset = Math.max(0, Number.parseInt(params.get("offset") ?? "0", 10) || 0);
    dispose = droneView(main, ctx, parts[1], offset);
  } else if (parts[0] === "flights" && parts[1]) {
    document.title = "Flight · Flightline";
    dispose = flightView(main, ctx, parts[1]);
  } else {
    document.title = "Fleet · Flightline";
    dispose = fleetView(main, ctx);
  }
}

window.addEventListener("hashchange", () => route());
renderTopbar();
route();
