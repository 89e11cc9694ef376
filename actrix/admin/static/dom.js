// Small DOM and formatting helpers. Every text reaches the page through
// textContent or attributes, never innerHTML, so API data cannot inject markup.

/**
 * Build an element: h("button", {class: "danger", onclick: fn}, "Delete").
 * Attributes starting with "on" become listeners; `dataset` is an object;
 * false/null/undefined attributes and children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const clockTime = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const clockMinutes = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const integer = new Intl.NumberFormat();

/** A unix time (seconds) as local date and time; "—" for none. */
export function fmtTime(unix) {
  if (unix === null || unix === undefined) return "—";
  return dateTime.format(new Date(unix * 1000));
}

/** A unix time as a short clock label (chart axes). */
export function fmtClock(unix, withSeconds = true) {
  return (withSeconds ? clockTime : clockMinutes).format(new Date(unix * 1000));
}

/** A <time> element: local time shown, ISO in the datetime attribute. */
export function timeEl(unix) {
  if (unix === null || unix === undefined) return h("span", { class: "muted" }, "—");
  const date = new Date(unix * 1000);
  return h("time", { datetime: date.toISOString() }, dateTime.format(date));
}

export function fmtInt(n) {
  return n === null || n === undefined ? "—" : integer.format(n);
}

/** A number with a unit prefix: 1536 → "1.5 k". */
export function fmtShort(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  const abs = Math.abs(n);
  const units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [size, suffix] of units) {
    if (abs >= size) return `${(n / size).toFixed(abs >= size * 100 ? 0 : 1)} ${suffix}`;
  }
  return Number.isInteger(n) ? String(n) : n.toFixed(abs < 10 ? 2 : 1);
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  let s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const hrs = Math.floor(s / 3600);
  s -= hrs * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d} d ${hrs} h`;
  if (hrs) return `${hrs} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

/** A details object of the audit log as "key=value" text. */
export function fmtDetails(details) {
  if (!details || typeof details !== "object") return details ? String(details) : "";
  return Object.entries(details)
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(", ");
}

/** A unix time from an <input type="datetime-local"> value; null when empty. */
export function unixFromLocal(value) {
  if (!value) return null;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
}

/** The <input type="datetime-local"> value for a unix time; "" for none. */
export function localFromUnix(unix) {
  if (unix === null || unix === undefined) return "";
  const d = new Date(unix * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
