// The admin control API (contract v1) as promises. The session cookie is
// HttpOnly, so the console only keeps the CSRF token it was given at login
// (or reads again from GET /session after a page load) and sends it with every
// state change.

const BASE = new URL("api/v1/", import.meta.url);
const TIMEOUT_MS = 15000;

export const session = { name: null, readOnly: false, csrf: null, expiresAt: null };

let onUnauthorized = () => {};

/** Called when a request answers 401 outside login: the session has ended. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function remember(body) {
  session.name = body.name;
  session.readOnly = Boolean(body.read_only);
  session.csrf = body.csrf;
  session.expiresAt = body.expires_at;
}

function forget() {
  session.name = null;
  session.readOnly = false;
  session.csrf = null;
  session.expiresAt = null;
}

function url(path, query) {
  const target = new URL(path.replace(/^\//, ""), BASE);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== "" && value !== null && value !== undefined) target.searchParams.set(key, value);
  }
  return target;
}

function describe(status, body) {
  if (body && typeof body === "object" && body.message) {
    let text = body.message;
    if (status === 429 && body.retry_after) text += ` Try again in ${Math.ceil(body.retry_after)} s.`;
    return text;
  }
  if (status === 502 || status === 503 || status === 504) return "The server is unavailable right now.";
  return `The server answered ${status} without an explanation.`;
}

/**
 * One API call. Resolves to the decoded JSON body (null for 204); rejects with
 * an ApiError whose message is meant for the operator.
 */
export async function request(method, path, { query, body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  let response;
  try {
    response = await fetch(url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal: abort.signal,
    });
  } catch (err) {
    const why = err.name === "AbortError" ? "it did not answer in time" : "the connection failed";
    throw new ApiError(0, "network", `The server cannot be reached (${why}).`);
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  if (response.status !== 204) {
    const type = response.headers.get("Content-Type") || "";
    data = type.includes("json") ? await response.json().catch(() => null) : null;
  }
  if (!response.ok) {
    const code = data && data.error ? data.error : "http";
    if (response.status === 401 && path !== "login" && path !== "session") {
      forget();
      onUnauthorized();
    }
    throw new ApiError(response.status, code, describe(response.status, data));
  }
  return data;
}

export const get = (path, query) => request("GET", path, { query });
export const post = (path, body = {}) => request("POST", path, { body });
export const patch = (path, body) => request("PATCH", path, { body });
export const del = (path) => request("DELETE", path);

/** A path segment for an id that may hold any character (actor ids have ':' '@' '/'). */
export const seg = (id) => encodeURIComponent(String(id));

export async function login(token) {
  remember(await post("login", { token }));
}

/** Whether a session cookie is still valid; fills `session` when it is. */
export async function restore() {
  try {
    remember(await get("session"));
    return true;
  } catch (err) {
    if (err.status === 401) return false;
    throw err;
  }
}

export async function logout() {
  try {
    await post("logout");
  } finally {
    forget();
  }
}
