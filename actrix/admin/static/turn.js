// TURN allocations with their traffic counters; terminate one.

import { post, seg } from "./api.js";
import { h, fmtBytes, fmtInt, timeEl } from "./dom.js";
import { ListView } from "./table.js";
import { replaceQuery } from "./nav.js";
import { confirmAction } from "./ui.js";
import { actionButton, pageHead } from "./common.js";

function terminate(allocation, done) {
  return confirmAction({
    title: "Terminate allocation",
    message: `Terminate the allocation of ${allocation.username} from ${allocation.client}? Its relay addresses are released and relayed media stops.`,
    confirmLabel: "Terminate",
    action: () => post(`turn/allocations/${seg(allocation.id)}/terminate`),
    success: `Allocation of ${allocation.username} terminated.`,
    done,
  });
}

export function render(view, route) {
  let list;
  list = new ListView({
    path: "turn/allocations",
    caption: "TURN allocations",
    query: route.query,
    sort: "created_at",
    order: "desc",
    onState: replaceQuery,
    refreshMs: 2000,
    live: true,
    empty: "No allocation matches.",
    filters: [
      { name: "username", label: "Username", placeholder: "exact username" },
      { name: "q", label: "Search", placeholder: "username, client or relay" },
    ],
    columns: [
      { key: "username", label: "Username", sortable: true, className: "mono" },
      { key: "realm", label: "Realm" },
      { key: "client", label: "Client", sortable: true, className: "mono" },
      { key: "transport", label: "Transport" },
      { key: "relay", label: "Relay", className: "mono", render: (a) => (a.relay || []).join(", ") },
      { key: "created_at", label: "Created", sortable: true, render: (a) => timeEl(a.created_at) },
      { key: "expires_at", label: "Expires", sortable: true, render: (a) => timeEl(a.expires_at) },
      { key: "bytes_in", label: "Bytes in", sortable: true, numeric: true, render: (a) => fmtBytes(a.bytes_in) },
      { key: "bytes_out", label: "Bytes out", sortable: true, numeric: true, render: (a) => fmtBytes(a.bytes_out) },
      { key: "packets_in", label: "Packets in", numeric: true, render: (a) => fmtInt(a.packets_in) },
      { key: "packets_out", label: "Packets out", numeric: true, render: (a) => fmtInt(a.packets_out) },
      { key: "actions", label: "", render: (a) => actionButton("Terminate", () => terminate(a, () => list.load()),
        { danger: true, describe: `Terminate allocation of ${a.username}` }) },
    ],
  });
  view.append(pageHead("TURN allocations"), list.element);
  list.start();
  return () => list.destroy();
}
