// Pieces several pages share: the page heading, action buttons (hidden for
// read-only tokens; the API refuses them anyway), detail lists, realm choices.

import { get, session } from "./api.js";
import { h } from "./dom.js";
import { showError } from "./ui.js";

export function pageHead(title, ...tools) {
  return h("div", { class: "page-head" }, h("h1", {}, title), h("div", { class: "head-tools" }, tools));
}

/** A button that changes something; not offered to read-only sessions. */
export function actionButton(label, onclick, { danger = false, small = true, id, describe } = {}) {
  if (session.readOnly) return null;
  const classes = ["write", danger ? "danger" : "", small ? "small" : ""].filter(Boolean).join(" ");
  return h("button", { type: "button", class: classes, id, "aria-label": describe, onclick }, label);
}

/** A <dl> of [term, value] pairs; null values show as a dash. */
export function details(pairs) {
  return h("dl", { class: "details" },
    pairs.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value ?? "—")]));
}

export function backLink(href, text) {
  return h("p", { class: "back" }, h("a", { href }, `← ${text}`));
}

let realmCache = { at: 0, items: [] };

/** Realms for pickers (at most 1000, cached 30 s). */
export async function realmList() {
  if (Date.now() - realmCache.at < 30000) return realmCache.items;
  const page = await get("realms", { limit: 1000, sort: "name", order: "asc" });
  realmCache = { at: Date.now(), items: page.items };
  return page.items;
}

export function forgetRealms() {
  realmCache = { at: 0, items: [] };
}

/** [[value, label]] options for a realm <select>, with an "all" entry first. */
export async function realmOptions(allLabel = "All realms") {
  const items = await realmList();
  const options = items.map((r) => [String(r.id), `${r.name} (${r.id})`]);
  return allLabel === null ? options : [["", allLabel], ...options];
}

/** Fill a list's realm filter once the realms are known; redraw for realm names. */
export function loadRealmFilter(list) {
  realmOptions().then((options) => {
    list.setOptions("realm_id", options);
    list.load();
  }, (err) => showError(err, "Loading realms"));
}

/** The realm column: its name when known, else the id. */
export function realmName(id) {
  const realm = realmCache.items.find((r) => r.id === id);
  return realm ? `${realm.name} (${id})` : String(id);
}

export function statusBadge(text) {
  const kind = { online: "ok", Normal: "ok", offline: "muted", Suspended: "warn", allow: "ok", deny: "warn" }[text] || "muted";
  return h("span", { class: `badge ${kind}` }, text);
}
