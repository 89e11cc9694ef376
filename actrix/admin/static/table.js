// A server-side list: filters, sortable column headers and a pager over one
// API list endpoint ({items, total, limit, offset}). Only one page of rows is
// ever in the DOM, so 10 000 actors cost the same as ten.

import { get } from "./api.js";
import { h, replace, fmtInt } from "./dom.js";
import { showError } from "./ui.js";

const PAGE_SIZES = [25, 50, 100, 250];
const DEBOUNCE_MS = 300;

export class ListView {
  /**
   * @param spec.path       API list path ("actors")
   * @param spec.columns    [{key, label, sortable?, numeric?, render?(item)}]
   * @param spec.filters    [{name, label, type: "text"|"select", options?: [[value, label]]}]
   * @param spec.query      initial state from the route (filters, sort, order, limit, offset)
   * @param spec.onState    called with the state whenever it changes (the URL keeps it)
   * @param spec.refreshMs  re-fetch the current page this often when "Live" is ticked
   */
  constructor(spec) {
    this.spec = spec;
    this.id = `list-${spec.path.replace(/[^a-z0-9]+/gi, "-")}`;
    const q = spec.query || {};
    this.state = {
      limit: PAGE_SIZES.includes(Number(q.limit)) ? Number(q.limit) : spec.limit || 50,
      offset: Math.max(0, Number(q.offset) || 0),
      sort: q.sort || spec.sort || "",
      order: q.order === "asc" || q.order === "desc" ? q.order : spec.order || "asc",
      filters: {},
    };
    for (const f of spec.filters || []) this.state.filters[f.name] = q[f.name] ?? f.value ?? "";
    this.total = 0;
    this.seq = 0;
    this.timer = null;
    this.debounce = null;
    this.element = this.build();
  }

  build() {
    const spec = this.spec;
    this.tbody = h("tbody");
    this.status = h("p", { class: "list-status", role: "status", "aria-live": "polite" });
    this.headRow = h("tr", {}, spec.columns.map((col) => this.header(col)));
    this.table = h("table", { class: "data", id: `${this.id}-table` },
      spec.caption ? h("caption", { class: "sr-only" }, spec.caption) : null,
      h("thead", {}, this.headRow), this.tbody);
    return h("div", { class: "list" },
      this.filterForm(),
      h("div", { class: "table-wrap" }, this.table),
      this.pager());
  }

  header(col) {
    const th = h("th", { scope: "col", class: col.numeric ? "num" : "" });
    if (!col.sortable) {
      th.append(col.label);
      return th;
    }
    th.dataset.sort = col.key;
    const button = h("button", { type: "button", class: "sort", onclick: () => this.sortBy(col.key) },
      col.label, h("span", { class: "sort-mark", "aria-hidden": "true" }));
    th.append(button);
    return th;
  }

  filterForm() {
    const spec = this.spec;
    const controls = (spec.filters || []).map((f) => {
      const id = `${this.id}-${f.name}`;
      let control;
      if (f.type === "select") {
        control = h("select", { id, name: f.name, onchange: () => this.filterChanged(0) },
          (f.options || []).map(([value, label]) => h("option", { value }, label)));
        f.control = control;
        control.value = this.state.filters[f.name];
      } else {
        control = h("input", {
          id, name: f.name, type: "search", placeholder: f.placeholder, autocomplete: "off",
          maxlength: 200, value: this.state.filters[f.name],
          oninput: () => this.filterChanged(DEBOUNCE_MS),
        });
      }
      return h("div", { class: "field" }, h("label", { for: id }, f.label), control);
    });
    this.filterControls = controls;
    const live = this.spec.refreshMs
      ? h("label", { class: "check" },
          h("input", { type: "checkbox", id: `${this.id}-live`, checked: Boolean(this.spec.live),
            onchange: (e) => this.setLive(e.target.checked) }), " Live")
      : null;
    const form = h("form", { class: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); this.filterChanged(0); } },
      controls,
      h("div", { class: "filter-actions" },
        h("button", { type: "button", class: "secondary", onclick: () => this.load() }, "Refresh"),
        live),
      this.status);
    this.form = form;
    return form;
  }

  /** Refill a select filter's options (e.g. realms loaded after the page). */
  setOptions(name, options) {
    const f = (this.spec.filters || []).find((x) => x.name === name);
    if (!f || !f.control) return;
    const current = this.state.filters[name];
    replace(f.control, options.map(([value, label]) => h("option", { value }, label)));
    if (current && !options.some(([value]) => String(value) === String(current))) {
      f.control.append(h("option", { value: current }, String(current)));
    }
    f.control.value = current;
  }

  pager() {
    const sizeId = `${this.id}-size`;
    this.first = h("button", { type: "button", class: "secondary", onclick: () => this.goto(0) }, "« First");
    this.prev = h("button", { type: "button", class: "secondary", onclick: () => this.goto(this.state.offset - this.state.limit) }, "‹ Previous");
    this.next = h("button", { type: "button", class: "secondary", onclick: () => this.goto(this.state.offset + this.state.limit) }, "Next ›");
    this.last = h("button", { type: "button", class: "secondary", onclick: () => this.goto(this.lastOffset()) }, "Last »");
    this.range = h("span", { class: "range" });
    const size = h("select", { id: sizeId, onchange: (e) => { this.state.limit = Number(e.target.value); this.goto(0); } },
      PAGE_SIZES.map((n) => h("option", { value: n, selected: n === this.state.limit }, String(n))));
    return h("nav", { class: "pager", "aria-label": "Pages" },
      this.range,
      h("span", { class: "pager-buttons" }, this.first, this.prev, this.next, this.last),
      h("span", { class: "page-size" }, h("label", { for: sizeId }, "Rows per page"), size));
  }

  lastOffset() {
    return Math.max(0, Math.floor((this.total - 1) / this.state.limit) * this.state.limit);
  }

  goto(offset) {
    this.state.offset = Math.max(0, offset);
    this.changed();
  }

  sortBy(key) {
    if (this.state.sort === key) this.state.order = this.state.order === "asc" ? "desc" : "asc";
    else {
      this.state.sort = key;
      this.state.order = "asc";
    }
    this.state.offset = 0;
    this.changed();
  }

  filterChanged(delay) {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      for (const f of this.spec.filters || []) {
        this.state.filters[f.name] = this.form.elements[f.name].value.trim();
      }
      this.state.offset = 0;
      this.changed();
    }, delay);
  }

  changed() {
    if (this.spec.onState) this.spec.onState(this.queryState());
    this.load();
  }

  /** The state as flat query parameters (for the URL). */
  queryState() {
    const s = this.state;
    const q = { ...s.filters };
    if (s.sort) Object.assign(q, { sort: s.sort, order: s.order });
    if (s.offset) q.offset = s.offset;
    if (s.limit !== (this.spec.limit || 50)) q.limit = s.limit;
    return q;
  }

  /** Fetch and draw the current page; a slower, older answer never overwrites a newer one. */
  async load() {
    const s = this.state;
    const seq = ++this.seq;
    const query = { limit: s.limit, offset: s.offset, ...s.filters };
    if (s.sort) Object.assign(query, { sort: s.sort, order: s.order });
    this.table.setAttribute("aria-busy", "true");
    try {
      const page = await get(this.spec.path, query);
      if (seq !== this.seq) return;
      this.total = page.total;
      if (page.items.length === 0 && s.offset > 0 && page.total > 0) {
        this.goto(this.lastOffset()); // the page emptied under us (rows deleted)
        return;
      }
      this.render(page);
    } catch (err) {
      if (seq !== this.seq) return;
      replace(this.status, `Could not load: ${err.message}`);
      this.status.classList.add("error");
      if (!this.timer) showError(err);
    } finally {
      if (seq === this.seq) this.table.removeAttribute("aria-busy");
    }
  }

  render(page) {
    const { columns } = this.spec;
    const rows = page.items.map((item) => {
      const tr = h("tr", { dataset: { key: String(this.spec.rowKey ? this.spec.rowKey(item) : item.id) } });
      for (const col of columns) {
        const value = col.render ? col.render(item, this) : item[col.key];
        tr.append(h("td", { class: col.numeric ? "num" : col.className || "" }, value ?? (col.render ? "" : "—")));
      }
      return tr;
    });
    if (rows.length === 0) {
      rows.push(h("tr", { class: "empty" }, h("td", { colspan: columns.length }, this.spec.empty || "Nothing matches.")));
    }
    replace(this.tbody, rows);
    for (const th of this.headRow.children) {
      const key = th.dataset.sort;
      if (!key) continue;
      const active = key === this.state.sort;
      th.setAttribute("aria-sort", active ? (this.state.order === "asc" ? "ascending" : "descending") : "none");
      th.querySelector(".sort-mark").textContent = active ? (this.state.order === "asc" ? " ▲" : " ▼") : "";
    }
    const from = page.total === 0 ? 0 : page.offset + 1;
    const to = page.offset + page.items.length;
    replace(this.range, page.total === 0 ? "No rows" : `${fmtInt(from)}–${fmtInt(to)} of ${fmtInt(page.total)}`);
    this.first.disabled = this.prev.disabled = page.offset === 0;
    this.next.disabled = this.last.disabled = to >= page.total;
    this.status.classList.remove("error");
    replace(this.status, "");
  }

  setLive(on) {
    clearInterval(this.timer);
    this.timer = on ? setInterval(() => this.tick(), this.spec.refreshMs) : null;
  }

  /** A live refresh, unless it would pull a row from under the operator's focus or a dialog. */
  tick() {
    const focused = this.tbody.contains(document.activeElement);
    if (!document.hidden && !focused && !document.querySelector("dialog[open]")) this.load();
  }

  start() {
    this.load();
    if (this.spec.refreshMs && this.spec.live) this.setLive(true);
    return this;
  }

  destroy() {
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    this.seq += 1;
  }
}
