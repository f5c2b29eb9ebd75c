// The dashboard's shell: the session, the API client, routing, and small DOM helpers.
//
// Everything goes through the public /api/v1. The session's bearer token lives in an
// HttpOnly cookie that no script here can read (core/http/session.py); changes send the
// session's CSRF value as X-CSRF-Token. Each system's view is a module of its own
// (crm.js, factories.js, ...) that registers its routes with `route`.

let session = null; // {user, scopes, expires_at, csrf_token} while logged in
const routes = [];
let loginMessage = "";

// ---------------------------------------------------------------- the API client

export class ApiError extends Error {
  constructor(status, problem) {
    super(problemText(status, problem));
    this.status = status;
    this.problem = problem || {};
  }
}

function problemText(status, problem) {
  if (status === 0) return "The server cannot be reached. Check your connection and try again.";
  if (!problem) return `The server answered HTTP ${status}.`;
  const detail = problem.detail || problem.title || `HTTP ${status}`;
  // A field error the detail already says in full is not said twice.
  const fields = (problem.errors || [])
    .map((e) => [(e.loc || e.field || []).toString().replace(/^body,?/, "") || "input", e.msg || e.message || e.detail])
    .filter(([, text]) => !detail.includes(text))
    .map(([where, text]) => `${where}: ${text}`)
    .join("; ");
  return [detail, fields].filter(Boolean).join(" — ");
}

const ENDED = "Your session has expired or was ended. Log in again.";

async function request(method, path, { body, headers = {}, form, raw } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (method !== "GET" && session) init.headers["X-CSRF-Token"] = session.csrf_token;
  if (form) {
    init.body = new URLSearchParams(form);
  } else if (raw !== undefined) {
    init.body = raw;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0);
  }
  if (response.status === 401 && session && path !== "/api/v1/auth/session") {
    endSession(ENDED);
    throw new ApiError(401, { detail: "Your session has ended." });
  }
  if (response.status === 204) return { data: null, response };
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, typeof data === "object" ? data : null);
  return { data, response };
}

function withQuery(path, params) {
  if (!params) return path;
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  const text = query.toString();
  return text ? `${path}${path.includes("?") ? "&" : "?"}${text}` : path;
}

/** POST, PUT or PATCH: the parsed body; `full: true` gives {data, response} (a 202 from a 200). */
function sending(method) {
  return async (path, body, { full = false, ...options } = {}) => {
    const result = await request(method, path, { body, ...options });
    return full ? result : result.data;
  };
}

export const api = {
  /** GET: the parsed body. `full: true` gives {data, response} (for ETag and headers). */
  async get(path, params, { full = false } = {}) {
    const result = await request("GET", withQuery(path, params));
    return full ? result : result.data;
  },
  post: sending("POST"),
  put: sending("PUT"),
  patch: sending("PATCH"),
  async del(path, options = {}) {
    return (await request("DELETE", path, options)).data;
  },
  /** POST a file's bytes with progress (fetch cannot report upload progress; XHR can). */
  upload(path, file, { contentType, encoding, onProgress } = {}) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("Content-Type", contentType || file.type || "application/octet-stream");
      if (encoding) xhr.setRequestHeader("Content-Encoding", encoding); // a gzipped file, sent as is
      if (session) xhr.setRequestHeader("X-CSRF-Token", session.csrf_token);
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress && onProgress(e.loaded / e.total);
      xhr.onerror = () => reject(new ApiError(0));
      xhr.onload = () => {
        let data = null;
        try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { data = null; }
        if (xhr.status === 401 && session) endSession(ENDED);
        if (xhr.status >= 200 && xhr.status < 300) resolve(data);
        else reject(new ApiError(xhr.status, data));
      };
      xhr.send(file);
    });
  },
};

/** All pages of a list endpoint (the list envelope's `items` and `next`), up to `max` items. */
export async function getAll(path, params, max = 1000) {
  const items = [];
  let page = await api.get(path, { limit: 100, ...params });
  items.push(...page.items);
  while (page.next && items.length < max) {
    page = await api.get(new URL(page.next, location.href).pathname + new URL(page.next, location.href).search);
    items.push(...page.items);
  }
  return items;
}

export function currentUser() {
  return session && session.user;
}

export function isAdmin() {
  return Boolean(session && session.user.role === "admin" && session.scopes.includes("admin"));
}

// ---------------------------------------------------------------- DOM helpers

/** Build an element: h("p", {class: "x", onclick: fn}, "text", child). Text is never parsed
 *  as HTML, so data from the API cannot inject markup. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A labelled form field. `options` makes it a <select> ([[value, label], ...]). */
export function field(label, name, { type = "text", value = "", options, required, ...rest } = {}) {
  const id = `f-${name}-${Math.random().toString(36).slice(2, 8)}`;
  let input;
  if (options) {
    input = h("select", { id, name, required, ...rest },
      options.map(([v, text]) => h("option", { value: v, selected: String(v) === String(value) }, text)));
  } else if (type === "textarea") {
    input = h("textarea", { id, name, required, ...rest }, value);
  } else {
    input = h("input", { id, name, type, value, required, ...rest });
  }
  return h("div", { class: "field" }, h("label", { for: id }, label), input);
}

/** A message in words: kind is "error", "ok" or "info". */
export function message(text, kind = "info") {
  return h("p", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

/** Replace `container`'s content with an error's words. */
export function showError(container, error) {
  container.replaceChildren(message(error instanceof Error ? error.message : String(error), "error"));
}

/** A transient notice in the live region at the top. */
export function notify(text, kind = "ok") {
  const status = document.getElementById("status");
  status.replaceChildren(message(text, kind));
}

/** A table inside a focusable scroll box (narrow screens scroll it sideways). */
export function table(caption, headers, rows, { empty = "Nothing here yet." } = {}) {
  if (!rows.length) return message(empty);
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((x) => (x instanceof Node ? x : h("th", { scope: "col" }, x))))),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c)))))));
}

export function formatDate(value) {
  if (!value) return "";
  const date = new Date(typeof value === "number" ? value * 1000 : value);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function formatNumber(value, digits = 0) {
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
}

/** The page's main heading, focused so a screen reader announces the new page. */
export function pageTitle(text) {
  document.title = `${text} · Wharf`;
  return h("h1", {}, text);
}

/** Busy state for a form's submit button while `work` runs; errors shown in `out`. */
export async function busy(button, out, work) {
  button.disabled = true;
  try {
    return await work();
  } catch (error) {
    if (out) showError(out, error);
    return undefined;
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- routing

/** Register a view: `pattern` like "#/crm/customers/:id"; `render(main, params, query)`. */
export function route(pattern, render) {
  const names = [];
  const regex = new RegExp(`^${pattern.replace(/:(\w+)/g, (_, n) => { names.push(n); return "([^/?]+)"; })}$`);
  routes.push({ regex, names, render, section: pattern.split("/")[1] });
}

/** Put `hash` in the address without a new render (pushState and replaceState fire no
 *  hashchange), unless the page that asks has been left (`view` detached): a render that
 *  finishes late must never move the person off the page they went to. */
export function setAddress(view, hash, { push = false } = {}) {
  if (!view.isConnected || location.hash === hash) return;
  if (push) history.pushState(null, "", hash);
  else history.replaceState(null, "", hash);
}

export function navigate(hash) {
  if (location.hash === hash) show();
  else location.hash = hash;
}

async function show() {
  const main = document.getElementById("main");
  const [path, search = ""] = (location.hash || "#/crm").split("?");
  if (!session && path !== "#/login") {
    location.hash = "#/login";
    return;
  }
  document.querySelector("header.top").hidden = !session;
  if (session && path !== "#/login") checkSession();
  const found = routes.map((r) => ({ r, m: path.match(r.regex) })).find((x) => x.m);
  for (const link of document.querySelectorAll("nav a")) {
    if (found && link.dataset.section === found.r.section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.getElementById("status").replaceChildren();
  // Each render gets a container of its own: a render that finishes after the person has
  // moved on writes into a detached element, never over the page they are on.
  const view = h("div", { class: "view" }, h("p", { class: "loading" }, "Loading…"));
  main.replaceChildren(view);
  if (!found) {
    view.replaceChildren(pageTitle("Not found"), message(`There is no page at ${path}.`), h("a", { href: "#/crm" }, "Go to the CRM"));
    return;
  }
  const params = Object.fromEntries(found.r.names.map((n, i) => [n, decodeURIComponent(found.m[i + 1])]));
  try {
    await found.r.render(view, params, new URLSearchParams(search));
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    view.replaceChildren(pageTitle("Something went wrong"), message(error.message || String(error), "error"));
  }
  if (document.activeElement === document.body) main.focus({ preventScroll: true });
}

// ---------------------------------------------------------------- the session

// Some pages render without calling the API (a lookup form), so a session ended elsewhere
// (another tab, a revoked token, its expiry) is also checked on every page change and when
// the tab comes back into view: the person lands on the login page, not on a dead form.
async function checkSession() {
  try {
    await request("GET", "/api/v1/auth/session");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && session) endSession(ENDED);
  }
}

function endSession(text) {
  session = null;
  loginMessage = text;
  document.querySelector("header.top").hidden = true;
  // One render only: a hash change renders by itself (and a second render would have
  // used up the message already).
  if (location.hash === "#/login") show();
  else location.hash = "#/login";
}

function renderLogin(main) {
  document.title = "Log in · Wharf";
  const out = h("div", { class: "out" }, loginMessage ? message(loginMessage, "error") : null);
  loginMessage = "";
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h("form", { class: "login card", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in to Wharf"),
    field("Email", "username", { type: "email", required: true, autocomplete: "username" }),
    field("Password", "password", { type: "password", required: true, autocomplete: "current-password" }),
    submit, out);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    busy(submit, out, async () => {
      try {
        session = await api.post("/api/v1/auth/session", undefined, {
          form: { username: data.get("username"), password: data.get("password") },
        });
      } catch (error) {
        if (error instanceof ApiError && error.status === 401) throw new Error("The email or password is wrong.");
        throw error;
      }
      startSession();
      navigate("#/crm");
    });
  });
  main.replaceChildren(form);
  form.querySelector("input").focus();
}

function startSession() {
  document.getElementById("who").textContent = `${session.user.name} (${session.user.email})`;
  document.querySelector("header.top").hidden = false;
}

async function logout() {
  try {
    await api.del("/api/v1/auth/session");
  } catch {
    // Logged out either way: the cookie is cleared by the answer, or the session is gone.
  }
  endSession("You are logged out.");
}

route("#/login", renderLogin);

async function boot() {
  document.getElementById("logout").addEventListener("click", logout);
  try {
    session = await api.get("/api/v1/auth/session");
    startSession();
  } catch (error) {
    session = null;
    if (error.status === 0) loginMessage = error.message;
  }
  // The views register their routes when imported; a view that fails to load must not
  // take the others with it.
  const views = ["crm", "factories", "cars", "certificates", "sales"];
  await Promise.all(views.map((name) => import(`./${name}.js`).catch((e) => console.warn(name, e))));
  window.addEventListener("hashchange", show);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && session) checkSession();
  });
  if (session && (!location.hash || location.hash === "#/login")) location.hash = "#/crm";
  else show();
}

boot();
