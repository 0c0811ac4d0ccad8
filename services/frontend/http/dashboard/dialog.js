// An in-page confirmation (a modal <dialog>): answers true for confirm-yes,
// false for confirm-no or Escape.

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
