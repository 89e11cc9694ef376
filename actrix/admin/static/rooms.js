// Rooms: list, detail with the members, close a room, kick a peer.

import { get, post, seg } from "./api.js";
import { h, replace, fmtInt, timeEl } from "./dom.js";
import { ListView } from "./table.js";
import { link, replaceQuery } from "./nav.js";
import { confirmAction } from "./ui.js";
import { actionButton, backLink, loadRealmFilter, details, pageHead, realmName } from "./common.js";

const DETAIL_REFRESH_MS = 3000;

/** Whether a refresh now would disturb the operator (hidden tab, open dialog, focus inside). */
function busy(element) {
  return document.hidden || Boolean(document.querySelector("dialog[open]")) || element.contains(document.activeElement);
}

function closeRoom(room, done) {
  return confirmAction({
    title: "Close room",
    message: `Close ${room.name}? Every peer in it (${room.peers}) is disconnected.`,
    confirmLabel: "Close room",
    action: () => post(`rooms/${seg(room.id)}/close`),
    success: `Room ${room.name} closed.`,
    done,
  });
}

function kickPeer(room, member, done) {
  return confirmAction({
    title: "Kick peer",
    message: `Remove ${member.display_name || member.peer_id} from ${room.name}?`,
    confirmLabel: "Kick",
    action: () => post(`rooms/${seg(room.id)}/peers/${seg(member.peer_id)}/kick`),
    success: `${member.display_name || member.peer_id} was removed.`,
    done,
  });
}

function renderList(view, route) {
  let list;
  list = new ListView({
    path: "rooms",
    caption: "Rooms",
    query: route.query,
    sort: "created_at",
    order: "desc",
    onState: replaceQuery,
    refreshMs: 3000,
    empty: "No room matches.",
    filters: [
      { name: "realm_id", label: "Realm", type: "select", options: [["", "All realms"]] },
      { name: "q", label: "Name contains", placeholder: "room name" },
    ],
    columns: [
      { key: "name", label: "Room", render: (r) => h("a", { href: link("rooms", [r.id]) }, r.name) },
      { key: "realm_id", label: "Realm", sortable: true, render: (r) => realmName(r.realm_id) },
      { key: "peers", label: "Peers", sortable: true, numeric: true, render: (r) => `${fmtInt(r.peers)} / ${fmtInt(r.max_peers)}` },
      { key: "persistent", label: "Persistent", render: (r) => (r.persistent ? "yes" : "no") },
      { key: "created_at", label: "Created", sortable: true, render: (r) => timeEl(r.created_at) },
      { key: "actions", label: "", render: (r) => actionButton("Close", () => closeRoom(r, () => list.load()),
        { danger: true, describe: `Close ${r.name}` }) },
    ],
  });
  view.append(pageHead("Rooms"), list.element);
  list.start();
  loadRealmFilter(list);
  return () => list.destroy();
}

function memberTable(room, reload) {
  const members = room.members || [];
  if (members.length === 0) return h("p", { class: "muted" }, "Nobody is in this room.");
  return h("div", { class: "table-wrap" }, h("table", { class: "data", id: "members" },
    h("caption", { class: "sr-only" }, "Members"),
    h("thead", {}, h("tr", {}, ["Peer", "Name", "Role", "Protocol", "Joined", "Remote", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, members.map((m) => h("tr", { dataset: { key: m.peer_id } },
      h("td", { class: "mono" }, m.peer_id),
      h("td", {}, m.display_name || "—"),
      h("td", {}, m.role),
      h("td", {}, m.protocol),
      h("td", {}, timeEl(m.joined_at)),
      h("td", { class: "mono" }, m.remote || "—"),
      h("td", {}, actionButton("Kick", () => kickPeer(room, m, reload), { danger: true, describe: `Kick ${m.peer_id}` })))))));
}

function renderDetail(view, id) {
  const head = h("div");
  const body = h("div", { class: "card" }, h("p", { class: "muted" }, "Loading…"));
  const page = h("div", {}, head, body);
  view.append(backLink(link("rooms"), "All rooms"), page);
  let gone = false;
  let timer = null;
  async function load() {
    try {
      const room = await get(`rooms/${seg(id)}`);
      if (gone) return;
      replace(head, pageHead(room.name,
        actionButton("Close room…", () => closeRoom(room, () => { location.hash = link("rooms"); }), { danger: true, small: false, id: "room-close" })));
      replace(body,
        details([
          ["Room id", h("span", { class: "mono" }, room.id)],
          ["Realm", realmName(room.realm_id)],
          ["Peers", `${fmtInt(room.peers)} of at most ${fmtInt(room.max_peers)}`],
          ["Persistent", room.persistent ? "yes" : "no"],
          ["Created", timeEl(room.created_at)],
        ]),
        h("h2", {}, "Members"),
        memberTable(room, load));
    } catch (err) {
      if (gone) return;
      clearInterval(timer);
      replace(body, h("p", { class: "error", role: "alert" }, err.status === 404 ? "This room no longer exists." : err.message));
    }
  }
  load();
  timer = setInterval(() => {
    if (!busy(page)) load();
  }, DETAIL_REFRESH_MS);
  return () => {
    gone = true;
    clearInterval(timer);
  };
}

export function render(view, route) {
  return route.args.length ? renderDetail(view, route.args[0]) : renderList(view, route);
}
