// Dialogs (confirmation, small forms) and the notice area. Dialogs are native
// <dialog> elements opened with showModal(): focus stays inside, Escape cancels.

import { h, replace } from "./dom.js";

const notices = () => document.getElementById("notices");

/** Show a message at the top of the page; errors stay until dismissed. */
export function notify(text, kind = "info") {
  const item = h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", {}, text),
    h("button", { type: "button", class: "link", "aria-label": "Dismiss", onclick: () => item.remove() }, "×"));
  notices().append(item);
  if (kind !== "error") setTimeout(() => item.remove(), 6000);
  return item;
}

/** An API error (or any error) in words. */
export function showError(err, what = "") {
  const text = err && err.message ? err.message : String(err);
  return notify(what ? `${what}: ${text}` : text, "error");
}

export function clearNotices() {
  notices().replaceChildren();
}

function field(spec) {
  const id = `f-${spec.name}`;
  let control;
  if (spec.type === "select") {
    control = h("select", { id, name: spec.name, required: spec.required },
      spec.options.map(([value, label]) => h("option", { value, selected: String(spec.value) === String(value) }, label)));
  } else if (spec.type === "textarea") {
    control = h("textarea", { id, name: spec.name, rows: 3, maxlength: spec.maxlength || 500 }, spec.value || "");
  } else {
    control = h("input", {
      id, name: spec.name, type: spec.type || "text", required: spec.required,
      value: spec.value ?? "", placeholder: spec.placeholder, min: spec.min, max: spec.max,
      maxlength: spec.maxlength, pattern: spec.pattern, autocomplete: "off",
    });
  }
  return h("div", { class: "field" },
    h("label", { for: id }, spec.label),
    control,
    spec.hint ? h("small", { class: "hint" }, spec.hint) : null);
}

/**
 * A modal form. `submit(values)` runs on confirm; if it throws, its message is
 * shown inside the dialog and the dialog stays open. Resolves to submit's
 * result, or null when the operator cancels.
 */
export function formDialog({ title, intro, fields = [], submitLabel = "Save", danger = false, submit }) {
  return new Promise((resolve) => {
    const error = h("p", { class: "dialog-error", role: "alert", hidden: true });
    const ok = h("button", { type: "submit", id: "dialog-ok", class: danger ? "danger" : "" }, submitLabel);
    const cancel = h("button", { type: "button", id: "dialog-cancel", class: "secondary" }, "Cancel");
    const form = h("form", { class: "dialog-form", novalidate: false },
      h("h2", { id: "dialog-title" }, title),
      intro ? h("p", { class: "dialog-intro" }, intro) : null,
      fields.map(field),
      error,
      h("div", { class: "dialog-actions" }, cancel, ok));
    const dialog = h("dialog", { class: "modal", "aria-labelledby": "dialog-title" }, form);
    let result = null;
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const values = {};
      for (const spec of fields) values[spec.name] = form.elements[spec.name].value.trim();
      ok.disabled = true;
      error.hidden = true;
      try {
        result = submit ? await submit(values) : values;
        if (result === undefined || result === null) result = true;
        dialog.close();
      } catch (err) {
        replace(error, err && err.message ? err.message : String(err));
        error.hidden = false;
      } finally {
        ok.disabled = false;
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    const first = form.querySelector("input, select, textarea");
    (first || (danger ? cancel : ok)).focus();
  });
}

/**
 * Ask before something destructive. With `reason`, the operator may type one
 * (sent to the API for the audit log). Runs `action(values)` inside the dialog
 * so an API error is shown right there. Once it succeeded, `success` (text, or
 * a function of the API's answer) is shown and `done(answer)` runs. Resolves to
 * the answer (true for an empty one), or null when the operator cancels.
 */
export async function confirmAction({ title, message, confirmLabel, reason = false, action, success, done }) {
  const fields = reason
    ? [{ name: "reason", label: "Reason (for the audit log, optional)", maxlength: 200 }]
    : [];
  const result = await formDialog({ title, intro: message, fields, submitLabel: confirmLabel, danger: true, submit: action });
  if (!result) return null;
  if (success) notify(typeof success === "function" ? success(result) : success, "success");
  if (done) done(result);
  return result;
}
