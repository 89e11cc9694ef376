// The console shell: session check, hash routing (#/page/arg?query) and the
// header. Each page module exports `render(view, route)` and returns a cleanup
// function (timers, observers) that runs when the operator leaves the page.

import * as api from "./api.js";
import { h, replace } from "./dom.js";
import { notify, showError, clearNotices } from "./ui.js";
import { parseHash, setLoginHandler } from "./nav.js";
import * as login from "./login.js";
import * as dashboard from "./dashboard.js";
import * as realms from "./realms.js";
import * as acl from "./acl.js";
import * as actors from "./actors.js";
import * as rooms from "./rooms.js";
import * as turn from "./turn.js";
import * as audit from "./audit.js";
import * as node from "./node.js";

const PAGES = {
  login: { module: login, title: "Log in" },
  dashboard: { module: dashboard, title: "Dashboard" },
  realms: { module: realms, title: "Realms" },
  acl: { module: acl, title: "ACL" },
  actors: { module: actors, title: "Actors" },
  rooms: { module: rooms, title: "Rooms" },
  turn: { module: turn, title: "TURN allocations" },
  audit: { module: audit, title: "Audit log" },
  node: { module: node, title: "Node" },
};

const view = document.getElementById("view");
let cleanup = null;
let afterLogin = "#/dashboard";

function showShell(loggedIn) {
  document.body.classList.toggle("anon", !loggedIn);
  replace(document.getElementById("who-name"), loggedIn ? api.session.name || "" : "");
  document.getElementById("who-ro").hidden = !(loggedIn && api.session.readOnly);
  document.body.classList.toggle("read-only", loggedIn && api.session.readOnly);
}

function markNav(page) {
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.route === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function route() {
  if (cleanup) {
    try {
      cleanup();
    } catch (err) {
      showError(err);
    }
    cleanup = null;
  }
  const current = parseHash();
  const signedIn = Boolean(api.session.csrf);
  if (!signedIn && current.page !== "login") {
    afterLogin = location.hash || "#/dashboard";
    location.replace("#/login");
    return;
  }
  if (signedIn && current.page === "login") {
    location.replace("#/dashboard");
    return;
  }
  const entry = PAGES[current.page];
  showShell(signedIn);
  markNav(current.page);
  if (!entry) {
    document.title = "Not found · actrix admin";
    replace(view, h("h1", {}, "Not found"), h("p", {}, "There is no such page. ", h("a", { href: "#/dashboard" }, "Go to the dashboard.")));
    return;
  }
  document.title = `${entry.title} · actrix admin`;
  view.replaceChildren();
  view.dataset.page = current.page;
  try {
    cleanup = entry.module.render(view, current) || null;
  } catch (err) {
    showError(err);
  }
  if (document.activeElement === document.body) view.focus({ preventScroll: true });
}

function enterConsole() {
  clearNotices();
  const target = afterLogin.startsWith("#/login") ? "#/dashboard" : afterLogin;
  afterLogin = "#/dashboard";
  if (location.hash === target) route();
  else location.hash = target;
}

async function logout() {
  try {
    await api.logout();
  } catch (err) {
    if (err.status !== 401) showError(err, "Logging out");
  }
  afterLogin = "#/dashboard";
  location.hash = "#/login";
  notify("You are logged out.");
}

async function start() {
  setLoginHandler(enterConsole);
  api.setUnauthorizedHandler(() => {
    if (parseHash().page === "login") return;
    afterLogin = location.hash;
    notify("Your session has ended. Log in again.", "error");
    location.hash = "#/login";
  });
  document.getElementById("logout").addEventListener("click", logout);
  // The skip link must not change the hash (that is the router's).
  document.querySelector(".skip").addEventListener("click", (event) => {
    event.preventDefault();
    view.focus();
  });
  window.addEventListener("hashchange", route);
  try {
    await api.restore();
  } catch (err) {
    showError(err, "Checking the session");
  }
  route();
}

start();
