// The live dashboard: current counts and line charts of the metrics time
// series (GET /metrics/series), refreshed every 2 s without reloading.

import { get } from "./api.js";
import { h, replace, fmtShort, fmtBytes, fmtDuration, fmtClock, fmtTime } from "./dom.js";
import { LineChart } from "./chart.js";
import { showError } from "./ui.js";

const WINDOWS = [
  { value: "300", label: "Last 5 minutes", resolution: "1s", seconds: 300, refreshMs: 2000 },
  { value: "900", label: "Last 15 minutes", resolution: "1s", seconds: 900, refreshMs: 2000 },
  { value: "3600", label: "Last hour", resolution: "1m", seconds: 3600, refreshMs: 20000 },
  { value: "86400", label: "Last 24 hours", resolution: "1m", seconds: 86400, refreshMs: 30000 },
];

const rate = (n) => `${fmtShort(n)}/s`;
const byteRate = (n) => `${fmtBytes(Math.round(n))}/s`;

const TILES = [
  { key: "connections", label: "Connections", format: fmtShort },
  { key: "actors", label: "Actors online", format: fmtShort },
  { key: "rooms", label: "Rooms", format: fmtShort },
  { key: "allocations", label: "TURN allocations", format: fmtShort },
  { key: "relays_per_sec", label: "Relays", format: rate },
  { key: "relayed_bytes_per_sec", label: "Relayed traffic", format: byteRate },
  { key: "auth_failures_per_sec", label: "Auth failures", format: rate },
];

const CHARTS = [
  { key: "presence", title: "Connections and actors", integer: true, series: [
    { key: "connections", label: "Connections" }, { key: "actors", label: "Actors" }] },
  { key: "rooms", title: "Rooms and TURN allocations", integer: true, series: [
    { key: "rooms", label: "Rooms" }, { key: "allocations", label: "Allocations" }] },
  { key: "traffic", title: "Relayed traffic", format: byteRate, binary: true, integer: true, series: [
    { key: "relayed_bytes_per_sec", label: "Bytes/s" }] },
  { key: "events", title: "Relays and auth failures per second", format: rate, series: [
    { key: "relays_per_sec", label: "Relays/s" }, { key: "auth_failures_per_sec", label: "Auth failures/s" }] },
];

function latest(values) {
  for (let i = (values || []).length - 1; i >= 0; i -= 1) if (values[i] !== null && values[i] !== undefined) return values[i];
  return null;
}

export function render(view) {
  const state = { window: WINDOWS[0], offset: 0, timer: null, nodeTimer: null, failing: false, seq: 0 };
  const updated = h("span", { id: "dash-updated", class: "muted", role: "status" });
  const select = h("select", { id: "dash-window" }, WINDOWS.map((w) => h("option", { value: w.value }, w.label)));
  const nodeLine = h("div", { id: "dash-node", class: "node-line" });
  const tiles = TILES.map((t) => {
    const value = h("strong", { class: "tile-value", dataset: { metric: t.key } }, "—");
    return { spec: t, value, element: h("div", { class: "tile" }, h("span", { class: "tile-label" }, t.label), value) };
  });
  const charts = CHARTS.map((c) => new LineChart(c));

  view.append(
    h("div", { class: "page-head" },
      h("h1", {}, "Dashboard"),
      h("div", { class: "head-tools" },
        h("label", { for: "dash-window", class: "sr-only" }, "Time window"), select, updated)),
    nodeLine,
    h("section", { class: "tiles", "aria-label": "Current values" }, tiles.map((t) => t.element)),
    h("section", { class: "charts", "aria-label": "Time series" }, charts.map((c) => c.element)));

  async function loadNode() {
    try {
      const node = await get("node");
      state.offset = node.started_at + node.uptime_secs - Date.now() / 1000;
      const services = Object.entries(node.services || {}).filter(([, on]) => on).map(([name]) => name);
      replace(nodeLine,
        h("span", {}, "actrix ", h("strong", {}, node.version)),
        h("span", {}, "node ", h("strong", {}, node.node_id)),
        h("span", {}, "env ", h("strong", {}, node.env)),
        h("span", { title: `started ${fmtTime(node.started_at)}` }, "up ", h("strong", {}, fmtDuration(node.uptime_secs))),
        h("span", {}, "services ", services.map((s) => h("span", { class: "badge ok" }, s))),
        node.draining ? h("span", { class: "badge warn" }, "draining") : null);
    } catch (err) {
      replace(nodeLine, h("span", { class: "error" }, `Node information unavailable: ${err.message}`));
    }
  }

  async function refresh() {
    const seq = ++state.seq;
    const w = state.window;
    const since = Math.floor(Date.now() / 1000 + state.offset - w.seconds);
    try {
      const data = await get("metrics/series", { resolution: w.resolution, since });
      if (seq !== state.seq) return;
      for (const t of tiles) {
        const v = latest(data.series[t.spec.key]);
        replace(t.value, v === null ? "—" : t.spec.format(v));
      }
      for (const c of charts) c.update(data.start, data.step, data.series);
      replace(updated, `Updated ${fmtClock(Date.now() / 1000 + state.offset)}`);
      updated.classList.remove("error");
      state.failing = false;
    } catch (err) {
      if (seq !== state.seq) return;
      replace(updated, `Not updating: ${err.message}`);
      updated.classList.add("error");
      if (!state.failing) showError(err, "Dashboard");
      state.failing = true;
    }
  }

  function schedule() {
    clearInterval(state.timer);
    state.timer = setInterval(() => {
      if (!document.hidden) refresh();
    }, state.window.refreshMs);
  }

  select.addEventListener("change", () => {
    state.window = WINDOWS.find((w) => w.value === select.value) || WINDOWS[0];
    refresh();
    schedule();
  });
  const onVisible = () => {
    if (!document.hidden) refresh();
  };
  document.addEventListener("visibilitychange", onVisible);

  loadNode().then(refresh);
  schedule();
  state.nodeTimer = setInterval(loadNode, 15000);
  return () => {
    clearInterval(state.timer);
    clearInterval(state.nodeTimer);
    state.seq += 1;
    document.removeEventListener("visibilitychange", onVisible);
    for (const c of charts) c.destroy();
  };
}
