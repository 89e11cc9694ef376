// The audit log: who changed what, when and from where (newest first).

import { h, fmtDetails, timeEl } from "./dom.js";
import { ListView } from "./table.js";
import { replaceQuery } from "./nav.js";
import { pageHead } from "./common.js";

export function render(view, route) {
  const list = new ListView({
    path: "audit",
    caption: "Audit log",
    query: route.query,
    onState: replaceQuery,
    refreshMs: 5000,
    empty: "No entry matches.",
    filters: [
      { name: "action", label: "Action", placeholder: "e.g. realm.suspend" },
      { name: "who", label: "Who", placeholder: "token name" },
    ],
    columns: [
      { key: "at", label: "When", render: (e) => timeEl(e.at) },
      { key: "who", label: "Who" },
      { key: "action", label: "Action", className: "mono" },
      { key: "target", label: "Target", className: "mono" },
      { key: "details", label: "Details", className: "details-cell", render: (e) => fmtDetails(e.details) || h("span", { class: "muted" }, "—") },
      { key: "remote", label: "From", className: "mono" },
    ],
  });
  view.append(pageHead("Audit log"), list.element);
  list.start();
  return () => list.destroy();
}
