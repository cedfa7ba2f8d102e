// API token for a server with authentication on: asked for on HTTP 401, kept in
// sessionStorage only (gone when the tab closes), sent as "Authorization: Bearer".
// The sign-in dialog is made here, the first time it is needed, for every page.

import { h } from "./dom.js";

const KEY = "isthmus.token";
let pending = null;

export function getToken() {
  try {
    return sessionStorage.getItem(KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    /* storage refused: the token lives for this page only */
  }
  document.dispatchEvent(new CustomEvent("isthmus:token", { detail: { signedIn: Boolean(token) } }));
}

/**
 * Ask the person for a token (one dialog for however many requests were refused).
 * Resolves to the token, or "" when they cancel.
 */
export function askToken(message) {
  if (pending) return pending;
  const dialog = document.getElementById("token-dialog") ?? document.body.appendChild(signInDialog());
  const form = dialog.querySelector("form");
  const input = dialog.querySelector("input[name=token]");
  dialog.querySelector("[data-role=message]").textContent = message || "This server needs an API token.";
  input.value = "";
  pending = new Promise((resolve) => {
    const done = (token) => {
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("cancel", onCancel);
      cancel.removeEventListener("click", onCancel);
      if (dialog.open) dialog.close();
      pending = null;
      if (token) setToken(token);
      resolve(token);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      done(input.value.trim());
    };
    const onCancel = (event) => {
      event.preventDefault();
      done("");
    };
    const cancel = dialog.querySelector("[data-role=cancel]");
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("cancel", onCancel);
    cancel.addEventListener("click", onCancel);
    dialog.showModal();
    input.focus();
  });
  return pending;
}

function signInDialog() {
  return h(
    "dialog",
    { id: "token-dialog", "aria-labelledby": "token-title" },
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: "token-title" }, "Sign in"),
      h("p", { "data-role": "message" }),
      h(
        "label",
        {},
        "API token ",
        h("input", { name: "token", type: "password", autocomplete: "off", required: true }),
      ),
      h("p", { class: "small" }, "Kept in this browser tab only (session storage), sent as a Bearer token."),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", "data-role": "cancel" }, "Cancel"),
        h("button", { type: "submit", class: "primary" }, "Use token"),
      ),
    ),
  );
}
