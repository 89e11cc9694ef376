// Actors: a server-side paginated list (filters by realm, type, status and a
// search), a detail view, and Revoke, which throws the actor out everywhere.

import { get, post, seg } from "./api.js";
import { h, replace, timeEl } from "./dom.js";
import { ListView } from "./table.js";
import { link, replaceQuery } from "./nav.js";
import { confirmAction } from "./ui.js";
import { actionButton, backLink, loadRealmFilter, details, pageHead, realmName, statusBadge } from "./common.js";

function revoke(id, after) {
  return confirmAction({
    title: "Revoke actor",
    message: `Revoke ${id}? Its signaling socket closes, its current token is refused on every path until it expires, its TURN allocations end and its room seats are freed.`,
    confirmLabel: "Revoke",
    reason: true,
    action: (values) => post(`actors/${seg(id)}/revoke`, values.reason ? { reason: values.reason } : {}),
    success: (r) => `Revoked ${id}: ${r.sockets_closed} socket(s) closed, ${r.allocations_terminated} TURN allocation(s) terminated, ${r.room_peers_removed} room seat(s) freed.`,
    done: after,
  });
}

function renderList(view, route) {
  let list;
  list = new ListView({
    path: "actors",
    caption: "Actors",
    query: route.query,
    sort: "id",
    onState: replaceQuery,
    refreshMs: 2000,
    empty: "No actor matches these filters.",
    rowKey: (a) => a.id,
    filters: [
      { name: "realm_id", label: "Realm", type: "select", options: [["", "All realms"]] },
      { name: "type", label: "Type", placeholder: "manufacturer:name" },
      { name: "status", label: "Status", type: "select", options: [["", "Any"], ["online", "Online"], ["offline", "Offline"]] },
      { name: "q", label: "Search", placeholder: "id or serial" },
    ],
    columns: [
      { key: "id", label: "Actor", sortable: true, className: "mono",
        render: (a) => h("a", { href: link("actors", [a.id]) }, a.id) },
      { key: "realm_id", label: "Realm", sortable: true, render: (a) => realmName(a.realm_id) },
      { key: "type", label: "Type", sortable: true, className: "mono" },
      { key: "serial", label: "Serial", className: "mono" },
      { key: "status", label: "Status", sortable: true, render: (a) => statusBadge(a.status) },
      { key: "node", label: "Node", sortable: true },
      { key: "connected_at", label: "Connected", render: (a) => timeEl(a.connected_at) },
      { key: "last_heartbeat", label: "Last heartbeat", sortable: true, render: (a) => timeEl(a.last_heartbeat) },
      { key: "remote", label: "Remote", className: "mono" },
      { key: "actions", label: "", render: (a) => (a.status === "online"
        ? actionButton("Revoke", () => revoke(a.id, () => list.load()), { danger: true, describe: `Revoke ${a.id}` })
        : null) },
    ],
  });
  view.append(pageHead("Actors"), list.element);
  list.start();
  loadRealmFilter(list);
  return () => list.destroy();
}

function renderDetail(view, id) {
  const body = h("div", { class: "card" }, h("p", { class: "muted" }, "Loading…"));
  view.append(backLink(link("actors"), "All actors"), pageHead(id), body);
  let gone = false;
  async function load() {
    try {
      const a = await get(`actors/${seg(id)}`);
      if (gone) return;
      replace(body,
        details([
          ["Actor id", h("span", { class: "mono" }, a.id)],
          ["Realm", h("a", { href: link("actors", [], { realm_id: a.realm_id }) }, realmName(a.realm_id))],
          ["Type", h("span", { class: "mono" }, a.type)],
          ["Serial", h("span", { class: "mono" }, a.serial)],
          ["Status", statusBadge(a.status)],
          ["Node", a.node],
          ["Connected", timeEl(a.connected_at)],
          ["Last heartbeat", timeEl(a.last_heartbeat)],
          ["Remote address", a.remote],
          ["Client version", a.version],
        ]),
        h("div", { class: "actions" },
          a.status === "online"
            ? actionButton("Revoke…", () => revoke(a.id, load), { danger: true, small: false, id: "actor-revoke" })
            : null));
    } catch (err) {
      if (gone) return;
      const text = err.status === 404 ? "This actor is not registered (any more)." : err.message;
      replace(body, h("p", { class: err.status === 404 ? "muted" : "error", role: "alert" }, text));
    }
  }
  load();
  return () => {
    gone = true;
  };
}

export function render(view, route) {
  return route.args.length ? renderDetail(view, route.args[0]) : renderList(view, route);
}
