// Sign in (and create an account) with email and password; the JWT goes to sessionStorage.

import { api, ApiError, session } from "../api";
import { h, mount } from "../dom";

export function loginView(root: HTMLElement, done: () => void, notice?: string): void {
  let mode: "signin" | "signup" = "signin";
  const email = h("input", {
    id: "email", name: "email", type: "email", autocomplete: "username", required: true, placeholder: "you@example.com",
  });
  const password = h("input", {
    id: "password", name: "password", type: "password", autocomplete: "current-password", required: true, minlength: 8,
  });
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const info = h("p", { class: "form-info", hidden: !notice }, notice ?? "");
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const title = h("h1", {}, "Sign in to Flightline");
  const hint = h("span", { class: "hint" }, "At least 8 characters.");
  hint.hidden = true;
  const switchLink = h("button", { type: "button", class: "link", id: "switch-mode" }, "Create an account");
  const switchText = h("span", {}, "New here? ");

  const setMode = (next: "signin" | "signup") => {
    mode = next;
    const signup = mode === "signup";
    title.textContent = signup ? "Create your Flightline account" : "Sign in to Flightline";
    submit.textContent = signup ? "Create account" : "Sign in";
    password.autocomplete = signup ? "new-password" : "current-password";
    switchText.textContent = signup ? "Have an account? " : "New here? ";
    switchLink.textContent = signup ? "Sign in" : "Create an account";
    hint.hidden = !signup;
  };
  switchLink.addEventListener("click", () => {
    error.hidden = true;
    setMode(mode === "signin" ? "signup" : "signin");
  });

  const form = h(
    "form",
    { class: "login-card", id: "login-form", novalidate: true },
    h("div", { class: "brand-large" }, h("span", { class: "logo", "aria-hidden": "true" }), "Flightline"),
    title,
    info,
    h("label", { for: "email" }, "Email"),
    email,
    h("label", { for: "password" }, "Password ", hint),
    password,
    error,
    submit,
    h("p", { class: "switch" }, switchText, switchLink),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    info.hidden = true;
    const address = email.value.trim();
    if (!address || !password.value) {
      showError("Enter your email and password.");
      return;
    }
    submit.disabled = true;
    submit.textContent = mode === "signup" ? "Creating account…" : "Signing in…";
    try {
      if (mode === "signup") await api.signup(address, password.value);
      const token = await api.token(address, password.value);
      session.save(token.access_token, address, token.expires_in);
      done();
    } catch (failure) {
      showError(describe(failure, mode));
      submit.disabled = false;
      setMode(mode);
    }
  });

  function showError(message: string) {
    error.textContent = message;
    error.hidden = false;
  }

  mount(root, h("div", { class: "login-page" }, form));
  email.focus();
}

function describe(failure: unknown, mode: "signin" | "signup"): string {
  if (!(failure instanceof ApiError)) return String(failure);
  if (mode === "signin" && failure.status === 401) return "Wrong email or password.";
  if (failure.status === 409) return "An account with this email already exists. Sign in instead.";
  if (failure.status === 403 && failure.code === "signup_disabled") return "Sign-up is disabled on this deployment.";
  return failure.message;
}
