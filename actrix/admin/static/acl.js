// ACL rules: which actor types may reach which, per realm. Operators add and
// remove rules; rules that came from registrations are listed too.

import { post, del } from "./api.js";
import { h } from "./dom.js";
import { ListView } from "./table.js";
import { replaceQuery } from "./nav.js";
import { confirmAction, formDialog, notify, showError } from "./ui.js";
import { actionButton, loadRealmFilter, pageHead, realmName, realmOptions, statusBadge } from "./common.js";

const TYPE_PATTERN = "[^:\\s]+:[^:\\s]+";

async function addRule(realmId, done) {
  let realms;
  try {
    realms = await realmOptions(null);
  } catch (err) {
    showError(err, "Loading realms");
    return;
  }
  if (realms.length === 0) {
    notify("Create a realm first.", "error");
    return;
  }
  const result = await formDialog({
    title: "Add ACL rule",
    submitLabel: "Add",
    fields: [
      { name: "realm_id", label: "Realm", type: "select", options: realms, value: realmId || realms[0][0], required: true },
      { name: "from_type", label: "From type", required: true, placeholder: "manufacturer:name", pattern: TYPE_PATTERN, maxlength: 256 },
      { name: "to_type", label: "To type", required: true, placeholder: "manufacturer:name", pattern: TYPE_PATTERN, maxlength: 256 },
      { name: "permission", label: "Permission", type: "select", options: [["allow", "allow"], ["deny", "deny"]], value: "allow" },
    ],
    submit: (v) => post("acl", { ...v, realm_id: Number(v.realm_id) }),
  });
  if (!result) return;
  notify(`Rule ${result.from_type} → ${result.to_type} (${result.permission}) added.`, "success");
  done();
}

function removeRule(rule, done) {
  return confirmAction({
    title: "Remove ACL rule",
    message: `Remove the rule ${rule.from_type} → ${rule.to_type} (${rule.permission}) in realm ${realmName(rule.realm_id)}?`,
    confirmLabel: "Remove",
    action: () => del(`acl/${rule.id}`),
    success: "Rule removed.",
    done,
  });
}

export function render(view, route) {
  let list;
  const reload = () => list.load();
  list = new ListView({
    path: "acl",
    caption: "ACL rules",
    query: route.query,
    sort: "id",
    onState: replaceQuery,
    empty: "No rule matches.",
    filters: [
      { name: "realm_id", label: "Realm", type: "select", options: [["", "All realms"]] },
      { name: "from_type", label: "From type", placeholder: "manufacturer:name" },
      { name: "to_type", label: "To type", placeholder: "manufacturer:name" },
    ],
    columns: [
      { key: "id", label: "Id", sortable: true, numeric: true },
      { key: "realm_id", label: "Realm", sortable: true, render: (r) => realmName(r.realm_id) },
      { key: "from_type", label: "From type", sortable: true, className: "mono" },
      { key: "to_type", label: "To type", sortable: true, className: "mono" },
      { key: "permission", label: "Permission", render: (r) => statusBadge(r.permission) },
      { key: "source", label: "Source" },
      { key: "actions", label: "", render: (r) => actionButton("Remove", () => removeRule(r, reload),
        { danger: true, describe: `Remove rule ${r.id}` }) },
    ],
  });
  view.append(
    pageHead("ACL rules", actionButton("Add rule…", () => addRule(list.state.filters.realm_id, reload), { small: false, id: "acl-new" })),
    list.element);
  list.start();
  loadRealmFilter(list);
  return () => list.destroy();
}
