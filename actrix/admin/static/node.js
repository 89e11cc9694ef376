// This node: version, uptime, services, the effective configuration (secrets
// already redacted by the server) and a config reload.

import { get, post } from "./api.js";
import { h, replace, fmtDuration, timeEl } from "./dom.js";
import { confirmAction, notify } from "./ui.js";
import { actionButton, details, pageHead } from "./common.js";

/** Flatten nested config objects into [dotted key, value] rows. */
function flatten(value, prefix = "", rows = []) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.length === 0 && prefix) rows.push([prefix, "{}"]);
    for (const key of keys) flatten(value[key], prefix ? `${prefix}.${key}` : key, rows);
  } else {
    rows.push([prefix, Array.isArray(value) ? JSON.stringify(value) : String(value)]);
  }
  return rows;
}

function configTable(config, filter) {
  const needle = filter.trim().toLowerCase();
  const rows = flatten(config).filter(([k, v]) => !needle || k.toLowerCase().includes(needle) || v.toLowerCase().includes(needle));
  if (rows.length === 0) return h("p", { class: "muted" }, "No key matches.");
  return h("table", { class: "data config", id: "config" },
    h("caption", { class: "sr-only" }, "Effective configuration"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Key"), h("th", { scope: "col" }, "Value"))),
    h("tbody", {}, rows.map(([k, v]) => h("tr", {},
      h("td", { class: "mono" }, k),
      h("td", { class: v === "<redacted>" ? "mono redacted" : "mono" }, v)))));
}

function reload(after) {
  return confirmAction({
    title: "Reload configuration",
    message: "Re-read the configuration file now? Keys that can change at run time are applied; the rest need a restart. An invalid file changes nothing.",
    confirmLabel: "Reload",
    action: () => post("node/reload"),
  }).then((result) => {
    if (!result || result === true) return;
    const applied = result.applied.length ? result.applied.join(", ") : "nothing";
    const restart = result.restart_needed.length ? ` Needs a restart: ${result.restart_needed.join(", ")}.` : "";
    notify(`Configuration reloaded. Applied: ${applied}.${restart}`, result.restart_needed.length ? "warn" : "success");
    after();
  });
}

export function render(view) {
  const info = h("div", { class: "card" }, h("p", { class: "muted" }, "Loading…"));
  const filter = h("input", { id: "config-filter", type: "search", placeholder: "key or value", autocomplete: "off", maxlength: 200 });
  const config = h("div", { class: "table-wrap" });
  let current = null;
  let gone = false;
  filter.addEventListener("input", () => current && replace(config, configTable(current, filter.value)));
  view.append(
    pageHead("Node", actionButton("Reload configuration…", () => reload(load), { small: false, id: "node-reload" })),
    info,
    h("section", { class: "card" },
      h("div", { class: "section-head" }, h("h2", {}, "Effective configuration"),
        h("div", { class: "field inline" }, h("label", { for: "config-filter" }, "Filter"), filter)),
      h("p", { class: "hint" }, "Secrets are replaced by <redacted> on the server; they never reach the browser."),
      config));

  async function load() {
    try {
      const [node, cfg] = await Promise.all([get("node"), get("node/config")]);
      if (gone) return;
      replace(info, details([
        ["Version", node.version],
        ["Node id", h("span", { class: "mono" }, node.node_id)],
        ["Environment", node.env],
        ["Started", timeEl(node.started_at)],
        ["Uptime", fmtDuration(node.uptime_secs)],
        ["Services", h("span", { class: "badges" }, Object.entries(node.services || {}).map(([name, on]) =>
          h("span", { class: `badge ${on ? "ok" : "muted"}` }, `${name} ${on ? "on" : "off"}`)))],
        ["Draining", node.draining ? h("span", { class: "badge warn" }, "yes") : "no"],
      ]));
      current = cfg;
      replace(config, configTable(cfg, filter.value));
    } catch (err) {
      if (gone) return;
      replace(info, h("p", { class: "error", role: "alert" }, err.message));
    }
  }
  load();
  return () => {
    gone = true;
  };
}
