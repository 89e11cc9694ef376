// Realms: list, create, edit (with the version the API checks for concurrent
// edits), suspend, resume and delete.

import { post, patch, del } from "./api.js";
import { h, fmtInt, timeEl, localFromUnix, unixFromLocal } from "./dom.js";
import { ListView } from "./table.js";
import { link, replaceQuery } from "./nav.js";
import { confirmAction, formDialog, notify } from "./ui.js";
import { actionButton, forgetRealms, pageHead, statusBadge } from "./common.js";

const NAME = { name: "name", label: "Name", required: true, maxlength: 128 };
const EXPIRES = { name: "expires_at", label: "Expires", type: "datetime-local", hint: "Leave empty for a realm that never expires." };

function createRealm(done) {
  return formDialog({
    title: "New realm",
    submitLabel: "Create",
    fields: [
      NAME,
      { name: "id", label: "Id", type: "number", min: 1, max: 4294967295, hint: "Optional; the server picks one when empty." },
      EXPIRES,
    ],
    submit: (v) => {
      const body = { name: v.name, expires_at: unixFromLocal(v.expires_at) };
      if (v.id) body.id = Number(v.id);
      return post("realms", body);
    },
  }).then((realm) => {
    if (!realm) return;
    forgetRealms();
    notify(`Realm ${realm.name} (${realm.id}) created.`, "success");
    done();
  });
}

function editRealm(realm, done) {
  return formDialog({
    title: `Edit realm ${realm.name}`,
    fields: [{ ...NAME, value: realm.name }, { ...EXPIRES, value: localFromUnix(realm.expires_at) }],
    submit: (v) => patch(`realms/${realm.id}`, {
      version: realm.version, name: v.name, expires_at: unixFromLocal(v.expires_at),
    }),
  }).then((updated) => {
    if (!updated) return;
    forgetRealms();
    notify(`Realm ${updated.name} saved.`, "success");
    done();
  });
}

function suspendRealm(realm, done) {
  return confirmAction({
    title: "Suspend realm",
    message: `Suspend ${realm.name} (${realm.id})? Every actor and room peer in it is disconnected at once, and nobody can sign in to it until it is resumed.`,
    confirmLabel: "Suspend",
    reason: true,
    action: (v) => post(`realms/${realm.id}/suspend`, v.reason ? { reason: v.reason } : {}),
    success: `Realm ${realm.name} suspended.`,
    done,
  });
}

async function resumeRealm(realm, done) {
  try {
    await post(`realms/${realm.id}/resume`);
    notify(`Realm ${realm.name} resumed.`, "success");
  } catch (err) {
    notify(`Resuming ${realm.name}: ${err.message}`, "error");
  }
  done();
}

function deleteRealm(realm, done) {
  return confirmAction({
    title: "Delete realm",
    message: `Delete ${realm.name} (${realm.id}) and its ACL rules? This cannot be undone.`,
    confirmLabel: "Delete",
    action: () => del(`realms/${realm.id}`),
    success: `Realm ${realm.name} deleted.`,
    done: () => {
      forgetRealms();
      done();
    },
  });
}

export function render(view, route) {
  let list;
  const reload = () => list.load();
  list = new ListView({
    path: "realms",
    caption: "Realms",
    query: route.query,
    sort: "id",
    onState: replaceQuery,
    empty: "No realm matches.",
    filters: [
      { name: "status", label: "Status", type: "select", options: [["", "Any"], ["Normal", "Normal"], ["Suspended", "Suspended"]] },
      { name: "q", label: "Name contains", placeholder: "name" },
    ],
    columns: [
      { key: "id", label: "Id", sortable: true, numeric: true },
      { key: "name", label: "Name", sortable: true, render: (r) => h("strong", {}, r.name) },
      { key: "status", label: "Status", sortable: true, render: (r) => statusBadge(r.status) },
      { key: "actors_online", label: "Actors online", sortable: true, numeric: true,
        render: (r) => h("a", { href: link("actors", [], { realm_id: r.id, status: "online" }) }, fmtInt(r.actors_online)) },
      { key: "rooms", label: "Rooms", sortable: true, numeric: true,
        render: (r) => h("a", { href: link("rooms", [], { realm_id: r.id }) }, fmtInt(r.rooms)) },
      { key: "expires_at", label: "Expires", render: (r) => timeEl(r.expires_at) },
      { key: "updated_at", label: "Updated", sortable: true, render: (r) => timeEl(r.updated_at) },
      { key: "actions", label: "Actions", render: (r) => h("span", { class: "row-actions" },
        h("a", { href: link("acl", [], { realm_id: r.id }), class: "small-link" }, "ACL"),
        actionButton("Edit", () => editRealm(r, reload), { describe: `Edit ${r.name}` }),
        r.status === "Suspended"
          ? actionButton("Resume", () => resumeRealm(r, reload), { describe: `Resume ${r.name}` })
          : actionButton("Suspend", () => suspendRealm(r, reload), { danger: true, describe: `Suspend ${r.name}` }),
        actionButton("Delete", () => deleteRealm(r, reload), { danger: true, describe: `Delete ${r.name}` })) },
    ],
  });
  view.append(
    pageHead("Realms", actionButton("New realm…", () => createRealm(reload), { small: false, id: "realm-new" })),
    list.element);
  list.start();
  return () => list.destroy();
}
