// Hash routes: #/page/arg?key=value. Shared by the shell and the pages.

let loginHandler = () => {};

/** The current route: {page, args: [decoded path parts], query: {k: v}}. */
export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#\/?/, "");
  const [path, search = ""] = raw.split("?", 2);
  const parts = path.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return {
    page: parts[0] || "dashboard",
    args: parts.slice(1),
    query: Object.fromEntries(new URLSearchParams(search)),
  };
}

/** A hash link: link("actors", ["abc"], {status: "online"}). */
export function link(page, args = [], query = {}) {
  const path = [page, ...args.map((a) => encodeURIComponent(String(a)))].join("/");
  const q = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== "" && v !== undefined && v !== null));
  const search = q.toString();
  return `#/${path}${search ? `?${search}` : ""}`;
}

/** Keep list state in the URL without adding history entries or re-rendering. */
export function replaceQuery(query) {
  const route = parseHash();
  history.replaceState(null, "", link(route.page, route.args, query));
}

/** The login page reports a new session here; the shell takes over. */
export function setLoginHandler(fn) {
  loginHandler = fn;
}

export function loggedIn() {
  loginHandler();
}
