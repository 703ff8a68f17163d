// The Luar admin dashboard: plain JavaScript, no build step, no third-party code.
// Every value shown comes from the admin API or /metrics and is put into the page as
// text (textContent, setAttribute), never as HTML: job args and errors are user data.
// The token lives in sessionStorage (this tab only) and goes out as a bearer header.
"use strict";

const TOKEN_KEY = "luar-admin-token";
const REFRESH_MS = 5000;
const STATES = ["queued", "scheduled", "running", "succeeded", "retrying", "dead"];

let refreshTimer = null;
let lastMetrics = null; // {at, values} of the previous /metrics scrape, for rates
let nextFlash = null;   // [message, kind] to show once the next page has rendered

// ---- DOM helpers ---------------------------------------------------------------------

// h("tag", {attr: value, onclick: fn}, child, ...): children are nodes or text.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function $(id) { return document.getElementById(id); }

function flash(msg, kind) {
  const f = $("flash");
  f.textContent = msg || "";
  f.className = kind || "";
}

function fmtTime(t) {
  if (t === null || t === undefined || !(t > 0)) return "–";
  return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
}

function ago(t) {
  if (!(t > 0)) return "";
  const s = Math.round(Date.now() / 1000 - t);
  if (s < 0) return "in " + human(-s);
  return human(s) + " ago";
}

function human(s) {
  if (s < 90) return s + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  if (s < 172800) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " d";
}

function badge(state) {
  return h("span", { class: "badge s-" + String(state).replace(/[^a-z_-]/g, "") }, state);
}

function pretty(v) {
  try { return JSON.stringify(v, null, 2); } catch (e) { return String(v); }
}

function table(headers, rows, empty) {
  if (rows.length === 0) return h("p", { class: "muted" }, empty || "Nothing here.");
  return h("div", { class: "scroll" },
    h("table", {},
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows)));
}

// ---- the API ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token() };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  let doc = null;
  try { doc = await r.json(); } catch (e) { doc = null; }
  if (r.status === 401) {
    signOut("The token was refused; sign in again.");
    throw new ApiError(401, "unauthorized");
  }
  if (!r.ok) throw new ApiError(r.status, (doc && doc.error) || r.statusText);
  return doc;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
}

// Prometheus text: {"name{labels}": value}; only the families the pages use.
async function scrape() {
  const r = await fetch("/metrics", { cache: "no-store" });
  const text = await r.text();
  const values = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const sp = line.lastIndexOf(" ");
    values[line.slice(0, sp)] = Number(line.slice(sp + 1));
  }
  return { at: Date.now() / 1000, values };
}

function sum(values, family, pred) {
  let total = 0;
  for (const [k, v] of Object.entries(values)) {
    if (k === family || k.startsWith(family + "{")) if (!pred || pred(k)) total += v;
  }
  return total;
}

function label(key, name) {
  const m = key.match(new RegExp(name + '="((?:[^"\\\\]|\\\\.)*)"'));
  return m ? m[1].replace(/\\(.)/g, "$1") : "";
}

// ---- sign in / out -------------------------------------------------------------------

function signOut(msg) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopRefresh();
  $("nav").hidden = true;
  $("signout").hidden = true;
  $("view").replaceChildren();
  $("login").hidden = false;
  $("login-error").textContent = msg || "";
  $("token").value = "";
  $("token").focus();
}

async function signIn(ev) {
  ev.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  try {
    await api("GET", "/admin/api/stats");
  } catch (e) {
    if (e.status !== 401) $("login-error").textContent = "Cannot reach the API: " + e.message;
    return;
  }
  $("token").value = "";
  showApp();
  if (!location.hash || location.hash === "#") location.hash = "#/overview";
  else route();
}

function showApp() {
  $("login").hidden = true;
  $("nav").hidden = false;
  $("signout").hidden = false;
}

// ---- routing ---------------------------------------------------------------------------

const pages = {
  overview: pageOverview,
  queues: pageQueues,
  jobs: (view, r) => pageJobs(view, r, false),
  dead: (view, r) => pageJobs(view, r, true),
  job: pageJob,
  schedules: pageSchedules,
  webhooks: pageWebhooks,
  deliveries: pageDeliveries,
  breakers: pageBreakers,
};

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?");
  const parts = path.split("/").map(decodeURIComponent);
  return { name: parts[0] || "overview", arg: parts[1], params: new URLSearchParams(qs || "") };
}

function stopRefresh() {
  if (refreshTimer) clearInterval(refreshTimer);
  refreshTimer = null;
}

async function route() {
  if (!token()) { signOut(); return; }
  stopRefresh();
  const r = parseHash();
  const page = pages[r.name] || pageOverview;
  for (const a of $("nav").querySelectorAll("a")) {
    const on = a.getAttribute("href") === "#/" + r.name ||
      (r.name === "job" && a.getAttribute("href") === "#/jobs");
    if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  flash("");
  const view = $("view");
  try {
    await page(view, r);
  } catch (e) {
    if (e.status !== 401) view.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
  }
  if (nextFlash) flash(...nextFlash);
  nextFlash = null;
}

// Puts a page together: a heading with a Refresh button, then the body.
function page(view, title, body, onRefresh) {
  const head = h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, title),
    onRefresh ? h("button", { type: "button", class: "quiet", onclick: onRefresh }, "Refresh") : null);
  view.replaceChildren(head, ...[].concat(body).filter((x) => x !== null && x !== undefined));
}

// ---- overview ------------------------------------------------------------------------

async function pageOverview(view) {
  const render = async () => {
    const [stats, m] = await Promise.all([api("GET", "/admin/api/stats"), scrape()]);
    const prev = lastMetrics;
    lastMetrics = m;
    const rate = (fam, pred) => {
      if (!prev) return "…";
      const dt = m.at - prev.at;
      if (dt <= 0) return "…";
      const d = sum(m.values, fam, pred) - sum(prev.values, fam, pred);
      return (Math.max(d, 0) / dt).toFixed(2) + "/s";
    };
    const cards = STATES.map((s) => h("a", { class: "stat", href: "#/" + (s === "dead" ? "dead" : "jobs?state=" + s) },
      h("span", { class: "stat-n" }, String(stats.totals[s])), h("span", { class: "stat-l" }, s)));
    const rates = [
      ["HTTP requests", rate("luar_http_requests_total")],
      ["HTTP 5xx", rate("luar_http_requests_total", (k) => /status="5/.test(k))],
      ["Webhooks accepted", rate("luar_webhooks_total", (k) => /outcome="accepted"/.test(k))],
      ["Jobs succeeded", rate("luar_jobs_total", (k) => /outcome="succeeded"/.test(k))],
      ["Jobs failed", rate("luar_jobs_total", (k) => /outcome="(failed|retried)"/.test(k))],
      ["Jobs dead", rate("luar_jobs_total", (k) => /outcome="dead"/.test(k))],
    ].map(([k, v]) => h("div", { class: "rate" }, h("span", { class: "stat-l" }, k), h("span", { class: "rate-v" }, v)));
    page(view, "Overview", [
      h("h2", {}, "Queue depth (all queues)"),
      h("div", { class: "stats" }, cards),
      h("h2", {}, "Rates (this process, since the last refresh)"),
      h("div", { class: "rates" }, rates),
      h("p", { class: "muted small" },
        "Luar " + stats.version + " · pid " + stats.pid + " · worker " + stats.worker +
        " · scripts generation " + stats.scripts_generation + " · up " +
        human(Math.round(stats.uptime_seconds)) + " · " + stats.jobs_running +
        " jobs running here · refreshes every " + REFRESH_MS / 1000 + " s"),
    ]);
  };
  await render();
  refreshTimer = setInterval(() => render().catch((e) => flash(e.message, "error")), REFRESH_MS);
}

// ---- queues ----------------------------------------------------------------------------

async function pageQueues(view) {
  const render = async () => {
    const stats = await api("GET", "/admin/api/stats");
    const rows = Object.entries(stats.queues).map(([q, c]) => h("tr", {},
      h("th", { scope: "row" }, q),
      STATES.map((s) => h("td", { class: "num" }, c[s] > 0
        ? h("a", { href: "#/" + (s === "dead" ? "dead?queue=" : "jobs?state=" + s + "&queue=") + encodeURIComponent(q) }, String(c[s]))
        : "0"))));
    page(view, "Queues", table(["Queue", ...STATES], rows, "No jobs in any queue."), () => render());
  };
  await render();
  refreshTimer = setInterval(() => render().catch((e) => flash(e.message, "error")), REFRESH_MS);
}

// ---- jobs and dead jobs --------------------------------------------------------------

function filterForm(params, dead, onSubmit) {
  const field = (name, labelText, attrs) => h("div", { class: "field" },
    h("label", { for: "f-" + name }, labelText),
    h("input", Object.assign({ id: "f-" + name, name, value: params.get(name) || "" }, attrs || {})));
  const state = dead ? null : h("div", { class: "field" },
    h("label", { for: "f-state" }, "State"),
    h("select", { id: "f-state", name: "state" },
      ["any", ...STATES].map((s) => h("option", { value: s, selected: (params.get("state") || "any") === s }, s))));
  return h("form", { class: "filters", onsubmit: onSubmit },
    state, field("queue", "Queue"), field("name", "Job name"), field("error", "Error contains"),
    field("since", dead ? "Died since" : "Since", { placeholder: "2026-01-02T03:04Z" }),
    field("until", dead ? "Died before" : "Until", { placeholder: "unix or ISO 8601" }),
    h("button", { type: "submit" }, "Filter"));
}

function filterParams(form) {
  const p = new URLSearchParams();
  for (const el of form.elements) if (el.name && el.value && el.value !== "any") p.set(el.name, el.value);
  return p;
}

async function pageJobs(view, r, dead) {
  const params = r.params;
  const filter = {};
  for (const k of ["state", "queue", "name", "error", "since", "until"]) if (params.get(k)) filter[k] = params.get(k);
  if (dead) filter.state = "dead";
  const list = h("div", {});
  const more = h("button", { type: "button", hidden: true }, "Next page");
  let cursor = null;
  const rows = [];
  const form = filterForm(params, dead, (ev) => {
    ev.preventDefault();
    location.hash = "#/" + (dead ? "dead" : "jobs") + "?" + filterParams(ev.target).toString();
  });
  const bulk = dead ? h("div", { class: "bulk" }) : null;

  const rowFor = (j) => h("tr", { "data-id": j.id },
    h("td", {}, h("a", { href: "#/job/" + encodeURIComponent(j.id), class: "mono" }, j.id)),
    h("td", {}, j.name), h("td", {}, j.queue), h("td", {}, badge(j.state)),
    h("td", { class: "num" }, j.attempt + "/" + (j.max_attempts || "∞")),
    h("td", { title: fmtTime(j.finished_at || j.enqueued_at) }, ago(j.finished_at || j.enqueued_at)),
    h("td", { class: "err" }, j.last_error && j.state !== "succeeded" ? j.last_error.split("\n")[0] : ""),
    dead ? h("td", {}, h("button", {
      type: "button", class: "small", "aria-label": "Retry job " + j.id,
      onclick: (ev) => retryOne(ev.currentTarget, j.id),
    }, "Retry")) : null);

  const load = async () => {
    const doc = await api("GET", "/admin/api/jobs" + query(Object.assign({ limit: 50, cursor: cursor || undefined }, filter)));
    for (const j of doc.jobs) rows.push(rowFor(j));
    cursor = doc.next_cursor;
    more.hidden = !cursor;
    const headers = ["Id", "Job", "Queue", "State", "Attempt", dead ? "Died" : "When", "Last error"];
    if (dead) headers.push(h("span", { class: "sr-only" }, "Actions"));
    list.replaceChildren(table(headers, rows, dead ? "No dead jobs match." : "No jobs match."));
    if (bulk) {
      const body = Object.assign({}, filter);
      delete body.state;
      bulk.replaceChildren(rows.length === 0 ? "" : h("button", {
        type: "button", class: "primary",
        onclick: (ev) => confirmBulk(ev.currentTarget, body),
      }, "Replay every matching dead job"));
    }
  };
  more.addEventListener("click", () => load().catch((e) => flash(e.message, "error")));
  page(view, dead ? "Dead jobs" : "Jobs", [form, bulk, list, more], () => route());
  await load();
}

async function retryOne(button, id) {
  button.disabled = true;
  try {
    await api("POST", "/admin/api/jobs/" + encodeURIComponent(id) + "/retry");
    flash("Job " + id + " queued again.", "ok");
    const row = button.closest("tr");
    row.querySelector(".badge").replaceWith(badge("queued"));
    button.textContent = "Queued";
  } catch (e) {
    flash("Retry of " + id + " failed: " + e.message, "error");
    button.disabled = false;
  }
}

// A second, explicit click confirms a bulk replay; Escape or Cancel takes it back.
function confirmBulk(button, body) {
  const bar = button.parentNode;
  const cancel = h("button", { type: "button", onclick: () => route() }, "Cancel");
  const go = h("button", {
    type: "button", class: "danger",
    onclick: async () => {
      go.disabled = true;
      try {
        const doc = await api("POST", "/admin/api/dead/replay", body);
        await route(); // the list without them (route() clears the message line first)
        flash("Replayed " + doc.replayed + " dead job" + (doc.replayed === 1 ? "" : "s") +
          (doc.max_reached ? " (the most one call replays; run it again for more)" : "") + ".", "ok");
      } catch (e) {
        flash("Replay failed: " + e.message, "error");
        go.disabled = false;
      }
    },
  }, "Yes, replay them");
  bar.replaceChildren(h("span", {}, "Replay every dead job matching the filter above? "), go, " ", cancel);
  go.focus();
}

// ---- one job ---------------------------------------------------------------------------

async function pageJob(view, r) {
  const id = r.arg || "";
  const j = await api("GET", "/admin/api/jobs/" + encodeURIComponent(id));
  const rows = [
    ["Id", h("span", { class: "mono" }, j.id)], ["Job", j.name], ["Queue", j.queue],
    ["State", badge(j.state)], ["Attempt", j.attempt + " of " + (j.max_attempts || "unlimited")],
    ["Priority", String(j.priority)], ["Unique key", j.key || "–"],
    ["Enqueued", fmtTime(j.enqueued_at)], ["Run at", fmtTime(j.run_at)],
    ["Started", fmtTime(j.started_at)], ["Finished", fmtTime(j.finished_at)],
    ["Lease owner", j.owner || "–"], ["Kept until", fmtTime(j.expires_at)],
  ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]);
  const actions = h("div", { class: "actions" });
  const retryable = ["dead", "retrying", "scheduled", "succeeded"].includes(j.state);
  if (retryable) actions.append(h("button", {
    type: "button", class: "primary", onclick: async (ev) => {
      ev.currentTarget.disabled = true;
      try {
        await api("POST", "/admin/api/jobs/" + encodeURIComponent(j.id) + "/retry");
        await route();
        flash("Job queued again.", "ok");
      } catch (e) { flash(e.message, "error"); }
    },
  }, "Retry"));
  actions.append(h("button", {
    type: "button", class: "danger", onclick: async (ev) => {
      const b = ev.currentTarget;
      if (b.dataset.armed !== "1") {
        b.dataset.armed = "1";
        b.textContent = "Click again to delete";
        return;
      }
      try {
        await api("DELETE", "/admin/api/jobs/" + encodeURIComponent(j.id));
        nextFlash = ["Job " + j.id + " deleted.", "ok"];
        location.hash = "#/jobs";
      } catch (e) { flash(e.message, "error"); }
    },
  }, "Delete"));
  const parts = [
    h("dl", { class: "fields" }, rows), actions,
    h("h2", {}, "Arguments"), h("pre", { class: "code" }, pretty(j.args)),
  ];
  if (j.result !== null) parts.push(h("h2", {}, "Result"), h("pre", { class: "code" }, pretty(j.result)));
  if (j.last_error) parts.push(h("h2", {}, j.state === "succeeded" ? "Error of an earlier attempt" : "Last error"),
    h("pre", { class: "code err" }, j.last_error));
  if (j.traceback) parts.push(h("h2", {}, "Traceback"), h("pre", { class: "code" }, j.traceback));
  if (j.state === "dead") {
    const area = h("textarea", { id: "replay-args", rows: 8, spellcheck: "false" });
    area.value = pretty(j.args);
    const err = h("p", { class: "error", role: "alert" });
    parts.push(h("form", {
      class: "replay", onsubmit: async (ev) => {
        ev.preventDefault();
        let args;
        try { args = JSON.parse(area.value); } catch (e) { err.textContent = "Not JSON: " + e.message; return; }
        try {
          const doc = await api("POST", "/admin/api/jobs/" + encodeURIComponent(j.id) + "/replay", { args });
          nextFlash = ["Replayed as job " + doc.id + "; the dead job was removed.", "ok"];
          location.hash = "#/job/" + encodeURIComponent(doc.id);
        } catch (e) { err.textContent = e.message; }
      },
    }, h("h2", {}, "Replay with edited arguments"),
      h("label", { for: "replay-args" }, "Arguments (JSON object or array) for a new job with the same name and queue"),
      area, err, h("button", { type: "submit" }, "Replay as a new job")));
  }
  page(view, "Job " + j.name, parts, () => route());
}

// ---- schedules, webhooks, deliveries, breakers ---------------------------------------

async function pageSchedules(view) {
  const doc = await api("GET", "/admin/api/schedules");
  const rows = doc.schedules.map((s) => h("tr", {},
    h("th", { scope: "row" }, s.name),
    h("td", { class: "mono" }, s.expr !== null ? s.expr : "every " + s.every + " s"),
    h("td", {}, s.tz), h("td", {}, s.job),
    h("td", {}, h("ul", { class: "plain" }, s.next.map((t) => h("li", { class: "mono" }, t)))),
    h("td", {}, s.last ? [badge(s.last.state), " ",
      h("a", { href: "#/job/" + encodeURIComponent(s.last.id) }, s.last.tick || ""),
      s.last.last_error ? h("div", { class: "err" }, s.last.last_error.split("\n")[0]) : null] : "–")));
  page(view, "Schedules", table(["Name", "Schedule", "Zone", "Job", "Next fire times", "Last tick"], rows,
    "The scripts declare no schedules."), () => route());
}

async function pageWebhooks(view) {
  const doc = await api("GET", "/admin/api/webhooks?limit=200");
  const rows = doc.webhooks.map((w) => h("tr", {},
    h("td", { title: fmtTime(w.at) }, ago(w.at)), h("td", { class: "mono" }, w.route),
    h("td", { class: "mono" }, w.id || "–"), h("td", {}, w.type || "–"),
    h("td", {}, badge(w.outcome)), h("td", { class: "num" }, String(w.status)),
    h("td", { class: "mono small" }, w.request_id)));
  page(view, "Inbound webhooks", [
    h("p", { class: "muted" }, "The latest requests answered by this process (pid " + doc.pid + "); no bodies or headers are kept."),
    table(["When", "Route", "Event id", "Type", "Outcome", "Status", "Request id"], rows, "No webhooks yet."),
  ], () => route());
}

async function pageDeliveries(view) {
  const doc = await api("GET", "/admin/api/deliveries?limit=200");
  const rows = doc.deliveries.map((d) => h("tr", {},
    h("td", {}, d.time.replace("T", " ")), h("td", { class: "mono wrap" }, d.url),
    h("td", { class: "num" }, d.attempt + "/" + d.max_attempts), h("td", {}, badge(d.outcome)),
    h("td", { class: "num" }, d.status === null ? "–" : String(d.status)), h("td", {}, d.error || ""),
    h("td", { class: "num" }, d.duration_ms.toFixed(0) + " ms"),
    h("td", {}, h("a", { href: "#/job/" + encodeURIComponent(d.job_id), class: "mono" }, d.msg_id))));
  page(view, "Outbound deliveries", [
    h("p", { class: "muted" }, "The latest attempts made by this process (pid " + doc.pid + "); secrets in URLs are redacted."),
    table(["Started", "URL", "Attempt", "Outcome", "Status", "Error", "Took", "Message"], rows, "No deliveries yet."),
  ], () => route());
}

async function pageBreakers(view) {
  const m = await scrape();
  const names = ["closed", "half-open", "open"];
  const rows = Object.entries(m.values).filter(([k]) => k.startsWith("luar_circuit_state{"))
    .map(([k, v]) => h("tr", {}, h("th", { scope: "row", class: "mono" }, label(k, "host")),
      h("td", {}, badge(names[v] || String(v)))));
  page(view, "Circuit breakers", [
    h("p", { class: "muted" }, "Outbound hosts this process has called (luar_circuit_state in /metrics)."),
    table(["Host", "State"], rows, "No outbound host has been called yet."),
  ], () => route());
}

// ---- start -----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signOut("Signed out."));
  window.addEventListener("hashchange", route);
  if (token()) { showApp(); route(); } else signOut();
});
