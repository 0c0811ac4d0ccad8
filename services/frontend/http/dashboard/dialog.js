// In-page modal <dialog>s: a confirmation (true for confirm-yes, false for
// confirm-no or Escape) and the request for an API key.

import { h } from "./format.js";

export function confirmDialog(title, text, yes = "Yes", no = "No") {
  return new Promise((resolve) => {
    const noButton = h("button", { type: "button", class: "secondary", testid: "confirm-no" }, no);
    const yesButton = h("button", { type: "button", testid: "confirm-yes" }, yes);
    const dialog = h("dialog", { testid: "confirm", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
      h("h2", { id: "confirm-title" }, title),
      h("p", { id: "confirm-text" }, text),
      h("div", { class: "actions" }, noButton, yesButton));
    const opener = document.activeElement;
    const done = (answer) => {
      dialog.close();
      dialog.remove();
      if (opener && opener.isConnected) opener.focus();
      resolve(answer);
    };
    yesButton.addEventListener("click", () => done(true));
    noButton.addEventListener("click", () => done(false));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      done(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    noButton.focus();
  });
}

// What a key looks like (cairn/keys.py): checked here so that a typo is named
// at once, and so that only header-safe text is ever sent.
const KEY_SHAPE = /^cairn_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/;

/**
 * Asks for an API key (a modal <dialog>, testid key-dialog): a password input
 * (key-input), key-submit and key-cancel. `refusal` (the API's message for the
 * key last tried) shows in key-error. Answers the key, or null when cancelled
 * (key-cancel or Escape).
 */
export function keyDialog(refusal = "") {
  return new Promise((resolve) => {
    const error = h("p", { id: "key-error", class: "alert", role: "alert", testid: "key-error", hidden: !refusal },
      refusal ? `The key was refused: ${refusal}` : "");
    const input = h("input", {
      id: "key-input", name: "key", type: "password", testid: "key-input", required: true,
      autocomplete: "off", spellcheck: "false", autocapitalize: "off",
      "aria-describedby": refusal ? "key-text key-error" : "key-text",
    });
    const cancel = h("button", { type: "button", class: "secondary", testid: "key-cancel" }, "Cancel");
    const form = h("form", { class: "key-form", novalidate: true },
      h("div", { class: "form-row" }, h("label", { for: "key-input" }, "API key"), input),
      error,
      h("div", { class: "actions" }, cancel, h("button", { type: "submit", testid: "key-submit" }, "Use this key")));
    const dialog = h("dialog", { testid: "key-dialog", class: "key-dialog", "aria-labelledby": "key-title", "aria-describedby": "key-text" },
      h("h2", { id: "key-title" }, "An API key, please"),
      h("div", { id: "key-text" },
        h("p", {}, "The dashboard reads the API with your API key. It is kept in this browser tab's session only, never in an address."),
        h("p", {}, h("code", {}, "cairn dev"), " printed an admin key when it started and keeps it in ",
          h("code", {}, ".cairn/admin.key"), "; or make one with ", h("code", {}, "cairn keys create"), ".")),
      form);
    const opener = document.activeElement;
    const done = (answer) => {
      dialog.close();
      dialog.remove();
      if (opener && opener.isConnected && opener !== document.body) opener.focus();
      resolve(answer);
    };
    const complain = (text) => {
      error.textContent = text;
      error.hidden = false;
      input.setAttribute("aria-describedby", "key-text key-error");
      input.setAttribute("aria-invalid", "true");
      input.focus();
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return complain("Enter a key.");
      if (!KEY_SHAPE.test(key)) return complain("That is not an API key: a key looks like cairn_ then 16 hex digits, _ and 43 more characters.");
      done(key);
    });
    cancel.addEventListener("click", () => done(null));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      done(null);
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}
