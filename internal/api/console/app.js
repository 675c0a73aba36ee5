// walhook console: a small single-page app over the HTTP API (/openapi.json). Everything it
// loads comes from this server; the key stays in this tab's sessionStorage.
"use strict";

const state = { key: "", me: null, timer: null, view: "", selected: null };
const $ = (sel, root = document) => root.querySelector(sel);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function flash(msg, ok = false) {
  const f = $("#flash");
  f.textContent = msg;
  f.className = ok ? "ok" : "";
  f.hidden = !msg;
}

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: "Bearer " + state.key } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) {
    if (resp.status === 401) signOut();
    const err = new Error(data && data.detail ? (data.field ? data.field + ": " : "") + data.detail : resp.status + " " + resp.statusText);
    err.problem = data;
    throw err;
  }
  return data;
}

function fmtTime(t) { return t ? new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "—"; }
function fmtBytes(n) {
  if (n === null || n === undefined) return "unknown";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function fmtAge(s) {
  if (s === null || s === undefined) return "—";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
const pill = (v) => h("span", { class: "pill " + v }, v);

// --- sign in ---

function signIn(key) {
  state.key = key.trim();
  sessionStorage.setItem("walhook-key", state.key);
  return api("GET", "/v1/me").then((me) => {
    state.me = me;
    $("#who").replaceChildren(me.operator ? h("span", {}, "operator · " + me.name)
      : h("span", {}, "tenant portal · ", h("span", { class: "tenant", "data-test": "tenant" }, me.tenant)));
    $("#nav").hidden = false;
    $("#signout").hidden = false;
    flash("");
    route();
  }).catch((e) => { state.key = ""; sessionStorage.removeItem("walhook-key"); flash("Sign-in failed: " + e.message); showLogin(); });
}

function signOut() {
  state.key = ""; state.me = null;
  sessionStorage.removeItem("walhook-key");
  $("#nav").hidden = true; $("#signout").hidden = true; $("#who").textContent = "";
  showLogin();
}

function showLogin() {
  stopTimer();
  const login = h("section", { id: "login", "data-test": "login" },
    h("h2", {}, "Sign in"),
    h("p", {}, "Paste an operator key (whk_…) or a tenant token (wht_…). walhook dev prints one; walhook api key create makes more."),
    h("form", { id: "login-form", onsubmit: (ev) => { ev.preventDefault(); signIn($("#login-key").value); } },
      h("input", { id: "login-key", type: "password", autocomplete: "off", placeholder: "whk_… or wht_…", size: 60, required: true }),
      " ", h("button", { type: "submit" }, "Sign in")));
  $("#main").replaceChildren(login);
}

function stopTimer() { if (state.timer) { clearInterval(state.timer); state.timer = null; } }
function every(ms, fn) { stopTimer(); fn(); state.timer = setInterval(fn, ms); }

// --- routing ---

const views = { overview, subscriptions, deliveries, "dead-letters": deadLetters, "event-types": eventTypes };

function route() {
  if (!state.me) return showLogin();
  const name = (location.hash.match(/^#\/([a-z-]+)/) || [])[1] || "overview";
  state.view = name;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === name);
  stopTimer();
  const section = h("section", { id: "view-" + name, "data-test": "view-" + name });
  $("#main").replaceChildren(section);
  return (views[name] || overview)(section).catch((e) => flash(e.message));
}

// --- overview ---

async function overview(root) {
  const cards = h("div", { class: "cards", "data-test": "cards" });
  const canvas = h("canvas", { id: "chart", width: 1200, height: 220 });
  root.append(h("h2", {}, state.me.operator ? "Pipeline" : "Your deliveries"), cards,
    h("div", { class: "panel" }, h("h3", {}, "Deliveries per second and latency (last 2 minutes)"),
      h("div", { class: "legend" }, h("span", {}, h("i", { class: "d" }), "delivered/s"), h("span", {}, h("i", { class: "f" }), "failed/s"),
        h("span", {}, h("i", { class: "p50" }), "p50 latency"), h("span", {}, h("i", { class: "p99" }), "p99 latency")),
      canvas));
  every(2000, async () => {
    try {
      const [ov, stats, st] = await Promise.all([api("GET", "/v1/overview"), api("GET", "/v1/stats/deliveries?seconds=120"),
        state.me.operator ? api("GET", "/v1/status") : Promise.resolve(null)]);
      const list = [];
      const card = (label, value, sub, bad) => h("div", { class: "card" + (bad ? " bad" : ""), "data-test": "card-" + label.toLowerCase().replace(/\W+/g, "-") },
        h("div", { class: "label" }, label), h("div", { class: "value" }, value), sub ? h("div", { class: "sub" }, sub) : null);
      if (st) {
        const s = st.slot || {};
        list.push(card("Slot lag", s.unknown ? "unknown" : fmtBytes(s.lag_bytes), s.unknown || (s.active ? "active" : "inactive") + (s.lag_seconds != null ? " · " + fmtAge(s.lag_seconds) : "")));
        for (const g of st.groups || []) list.push(card("Lag " + g.stage, g.unknown ? "unknown" : g.lag, g.group + " · " + g.state, g.lag > 1000));
        const d = st.dead_letters || {};
        list.push(card("Dead letters", d.unknown ? "unknown" : d.records, "in " + d.topic + " · " + ov.open_dead_letters + " not redelivered", ov.open_dead_letters > 0));
        const u = st.oldest_undelivered;
        list.push(card("Oldest undelivered", u ? fmtAge(u.age_seconds) : (st.oldest_undelivered_unknown ? "unknown" : "none"), u ? u.topic + "[" + u.partition + "]@" + u.offset : ""));
        list.push(card("Disabled subscriptions", (st.disabled_subscriptions || []).length, ov.subscriptions + " subscriptions"));
      } else {
        list.push(card("Subscriptions", ov.subscriptions, ov.enabled_subscriptions + " enabled · " + ov.disabled_subscriptions + " disabled"));
        list.push(card("Deliveries", ov.deliveries, "in the delivery log"));
        list.push(card("Dead letters", ov.open_dead_letters, "not redelivered", ov.open_dead_letters > 0));
      }
      cards.replaceChildren(...list);
      drawChart(canvas, stats.buckets);
    } catch (e) { flash(e.message); }
  });
}

// drawChart draws bars of deliveries per second and lines of p50/p99 latency on a second axis.
function drawChart(canvas, buckets) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = { l: 44, r: 52, t: 10, b: 22 };
  ctx.clearRect(0, 0, W, H);
  const n = buckets.length || 1;
  // A multiple of 4, so that the axis's five ticks are whole deliveries per second.
  const maxRate = 4 * Math.ceil(Math.max(1, ...buckets.map((b) => b.delivered + b.failed)) / 4);
  const maxLat = Math.max(1, ...buckets.map((b) => b.latency_p99_ms || 0));
  const x = (i) => pad.l + (i / n) * (W - pad.l - pad.r);
  const bw = (W - pad.l - pad.r) / n;
  const yr = (v) => H - pad.b - (v / maxRate) * (H - pad.t - pad.b);
  const yl = (v) => H - pad.b - (v / maxLat) * (H - pad.t - pad.b);
  ctx.strokeStyle = "#d8dde6"; ctx.fillStyle = "#667085"; ctx.font = "11px sans-serif";
  for (let k = 0; k <= 4; k++) {
    const yy = pad.t + (k / 4) * (H - pad.t - pad.b);
    ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(W - pad.r, yy); ctx.stroke();
    ctx.fillText(String(Math.round(maxRate * (1 - k / 4))), 4, yy + 4);
    ctx.fillText((maxLat * (1 - k / 4)).toFixed(1) + " ms", W - pad.r + 4, yy + 4);
  }
  buckets.forEach((b, i) => {
    ctx.fillStyle = "#6b9bf2"; ctx.fillRect(x(i) + 1, yr(b.delivered), Math.max(1, bw - 2), H - pad.b - yr(b.delivered));
    ctx.fillStyle = "#e0736a"; ctx.fillRect(x(i) + 1, yr(b.delivered + b.failed), Math.max(1, bw - 2), yr(b.delivered) - yr(b.delivered + b.failed));
  });
  for (const [key, color] of [["latency_p50_ms", "#1a7f37"], ["latency_p99_ms", "#9a6700"]]) {
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    let started = false;
    buckets.forEach((b, i) => {
      if (b[key] == null) { started = false; return; }
      const px = x(i) + bw / 2, py = yl(b[key]);
      if (!started) { ctx.moveTo(px, py); started = true; } else ctx.lineTo(px, py);
      ctx.fillStyle = color; ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
    });
    ctx.stroke(); ctx.lineWidth = 1;
  }
  ctx.fillStyle = "#667085";
  if (buckets.length) {
    ctx.fillText(fmtTime(buckets[0].time).slice(11), pad.l, H - 6);
    ctx.fillText(fmtTime(buckets[buckets.length - 1].time).slice(11), W - pad.r - 60, H - 6);
  }
}

// --- subscriptions ---

async function subscriptions(root) {
  const [apps, events, subs] = await Promise.all([api("GET", "/v1/applications"), api("GET", "/v1/event-types"), allSubscriptions()]);
  const appSelect = h("select", { id: "sub-app", name: "application" },
    apps.items.map((a) => h("option", { value: String(a.id) }, a.name)), h("option", { value: "" }, "new application…"));
  const newApp = h("input", { id: "sub-new-app", placeholder: "name of a new application" });
  const form = h("form", { class: "inline", id: "sub-form", "data-test": "sub-form", onsubmit: createSubscription },
    h("label", {}, "Application", appSelect), h("label", {}, "New application", newApp),
    state.me.operator ? h("label", {}, "Tenant", h("input", { id: "sub-tenant", required: true, placeholder: "acme" })) : null,
    h("label", {}, "Event", h("select", { id: "sub-event" }, events.items.map((e) => h("option", { value: e.event }, e.event)))),
    h("label", {}, "URL", h("input", { id: "sub-url", size: 44, required: true, placeholder: "https://crm.example.com/hooks" })),
    h("label", {}, "Method", h("select", { id: "sub-method" }, ["POST", "PUT", "PATCH"].map((m) => h("option", {}, m)))),
    h("label", {}, "Format", h("select", { id: "sub-format" }, ["bare", "envelope"].map((m) => h("option", {}, m)))),
    h("button", { type: "submit", id: "sub-create" }, "Subscribe"));
  const created = h("div", { id: "sub-created" });
  root.append(h("h2", {}, "New subscription"), form, created, h("h2", {}, "Subscriptions by tenant"));
  const byTenant = {};
  for (const s of subs) (byTenant[s.tenant] = byTenant[s.tenant] || []).push(s);
  const appName = Object.fromEntries(apps.items.map((a) => [a.id, a.name]));
  for (const tenant of Object.keys(byTenant).sort()) {
    root.append(h("h3", { "data-test": "tenant-" + tenant }, "tenant " + tenant),
      h("table", { "data-test": "subs-" + tenant },
        h("tr", {}, ["uuid", "application", "event", "url", "format", "state", ""].map((c) => h("th", {}, c))),
        byTenant[tenant].map((s) => h("tr", { "data-uuid": s.uuid },
          h("td", { class: "mono" }, s.uuid), h("td", {}, appName[s.application_id] || String(s.application_id)), h("td", {}, s.event),
          h("td", { class: "mono" }, s.url), h("td", {}, s.format),
          h("td", {}, pill(s.enabled ? "enabled" : "disabled"), s.disabled_reason ? h("div", { class: "muted" }, s.disabled_reason) : null),
          h("td", {},
            s.enabled ? h("button", { class: "danger", "data-action": "disable", onclick: () => act("POST", "/v1/subscriptions/" + s.uuid + "/disable", "disabled " + s.uuid) }, "Disable")
              : h("button", { class: "secondary", "data-action": "enable", onclick: () => act("POST", "/v1/subscriptions/" + s.uuid + "/enable", "enabled " + s.uuid) }, "Enable"),
            " ", h("button", { class: "secondary", "data-action": "replay", onclick: () => replayForm(s) }, "Replay…"))))));
  }
  if (!subs.length) root.append(h("p", { class: "muted" }, "No subscriptions yet."));
}

async function allSubscriptions() {
  let out = [], cursor = "";
  do {
    const page = await api("GET", "/v1/subscriptions?limit=500" + (cursor ? "&cursor=" + cursor : ""));
    out = out.concat(page.items); cursor = page.next_cursor;
  } while (cursor);
  return out;
}

async function createSubscription(ev) {
  ev.preventDefault();
  try {
    let application = $("#sub-app").value;
    const newName = $("#sub-new-app").value.trim();
    if (newName) application = String((await api("POST", "/v1/applications", { name: newName })).id);
    const body = { application, event: $("#sub-event").value, url: $("#sub-url").value.trim(), method: $("#sub-method").value, format: $("#sub-format").value };
    if (state.me.operator) body.tenant = $("#sub-tenant").value.trim();
    const s = await api("POST", "/v1/subscriptions", body);
    flash("subscribed " + s.uuid, true);
    await route();
    $("#sub-created").replaceChildren(h("div", { class: "panel", "data-test": "created" }, "Subscription ", h("span", { class: "mono", id: "created-uuid" }, s.uuid),
      " created. Its signing secret is shown only now:", h("code", { class: "secret", id: "created-secret" }, s.secret)));
  } catch (e) { flash(e.message); }
}

async function act(method, path, done, body) {
  try { await api(method, path, body); flash(done, true); route(); } catch (e) { flash(e.message); }
}

function replayForm(s) {
  const since = h("input", { id: "replay-since", type: "text", value: new Date(Date.now() - 3600e3).toISOString().replace(/\.\d+Z$/, "Z"), size: 22 });
  const until = h("input", { id: "replay-until", type: "text", value: new Date().toISOString().replace(/\.\d+Z$/, "Z"), size: 22 });
  const panel = h("form", { class: "inline", id: "replay-form", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", "/v1/subscriptions/" + s.uuid + "/replay", { since: since.value, until: until.value });
      flash("replaying " + r.requested + " snapshots to " + s.uuid, true);
    } catch (e) { flash(e.message); }
  } }, h("strong", {}, "Replay " + s.event + " to " + s.uuid), h("label", {}, "Since (RFC 3339)", since), h("label", {}, "Until", until),
    h("button", { type: "submit" }, "Replay window"));
  $("#sub-created").replaceChildren(panel);
  window.scrollTo(0, 0);
}

// --- deliveries ---

async function deliveries(root) {
  const outcome = h("select", { id: "del-outcome" }, ["", "delivered", "retry", "dead_letter", "gone", "disabled_target"].map((o) => h("option", { value: o }, o || "any outcome")));
  const sub = h("input", { id: "del-sub", placeholder: "subscription uuid", size: 38 });
  const table = h("table", { id: "deliveries", "data-test": "deliveries" });
  const detail = h("div", { id: "delivery-detail" });
  root.append(h("h2", {}, "Delivery log"), h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); load(); } },
    h("label", {}, "Outcome", outcome), h("label", {}, "Subscription", sub), h("button", { type: "submit" }, "Filter")),
    h("div", { class: "row" }, h("div", {}, table), detail));
  async function load() {
    const q = new URLSearchParams({ limit: "100" });
    if (outcome.value) q.set("outcome", outcome.value);
    if (sub.value.trim()) q.set("subscription", sub.value.trim());
    const page = await api("GET", "/v1/deliveries?" + q);
    table.replaceChildren(h("tr", {}, ["last attempt", "tenant", "event", "root", "v", "outcome", "status", "attempts", "latency"].map((c) => h("th", {}, c))),
      ...page.items.map((d) => h("tr", { class: "clickable" + (state.selected === d.webhook_id ? " selected" : ""), "data-webhook-id": d.webhook_id, onclick: () => showDelivery(d.webhook_id, detail) },
        h("td", {}, fmtTime(d.last_attempt_at)), h("td", {}, d.tenant), h("td", {}, d.event_type), h("td", {}, d.root_key), h("td", {}, d.version),
        h("td", {}, pill(d.outcome)), h("td", {}, d.status || "—"), h("td", {}, d.attempt_count), h("td", {}, d.last_latency_ms.toFixed(1) + " ms"))));
  }
  every(3000, () => load().catch((e) => flash(e.message)));
}

async function showDelivery(id, detail) {
  state.selected = id;
  try {
    const d = await api("GET", "/v1/deliveries/" + encodeURIComponent(id));
    detail.replaceChildren(h("div", { class: "panel", "data-test": "delivery-detail" },
      h("h3", {}, d.event_type + " · root " + d.root_key + " · version " + d.version),
      h("div", { class: "mono" }, d.webhook_id, " → ", d.subscription),
      h("p", {}, h("button", { id: "retrigger", onclick: () => act("POST", "/v1/subscriptions/" + d.subscription + "/retrigger",
        "re-triggered version " + d.version, { root_key: d.root_key, version: d.version }) }, "Retrigger this version")),
      h("table", { "data-test": "attempts" }, h("tr", {}, ["#", "time", "outcome", "status", "latency", "error", "response (first KiB)"].map((c) => h("th", {}, c))),
        d.attempts.map((a) => h("tr", {}, h("td", {}, a.attempt), h("td", {}, fmtTime(a.time)), h("td", {}, pill(a.outcome)), h("td", {}, a.status || "—"),
          h("td", {}, a.latency_ms.toFixed(1) + " ms"), h("td", {}, a.error || ""), h("td", { class: "mono" }, a.response_body || ""))))));
  } catch (e) { flash(e.message); }
}

// --- dead letters ---

async function deadLetters(root) {
  const table = h("table", { id: "dead-letters", "data-test": "dead-letters" });
  const detail = h("div", { id: "dead-detail" });
  root.append(h("h2", {}, "Dead letters"),
    h("p", {}, h("button", { id: "redrive-all", onclick: async () => {
      try { const r = await api("POST", "/v1/dead-letters/redrive", {}); flash("redriving " + r.requested + " dead letters", true); } catch (e) { flash(e.message); }
    } }, "Redrive every dead letter not delivered since")),
    h("div", { class: "row" }, h("div", {}, table), detail));
  async function load() {
    const page = await api("GET", "/v1/dead-letters?limit=100");
    table.replaceChildren(h("tr", {}, ["dead at", "tenant", "event", "root", "v", "state", "last error", ""].map((c) => h("th", {}, c))),
      ...page.items.map((d) => h("tr", { "data-id": d.id, "data-webhook-id": d.webhook_id },
        h("td", {}, fmtTime(d.dead_at)), h("td", {}, d.tenant), h("td", {}, d.event_type), h("td", {}, d.root_key), h("td", {}, d.version),
        h("td", { "data-test": "state" }, pill(d.state)), h("td", {}, d.last_error),
        h("td", {}, h("button", { class: "secondary", "data-action": "inspect", onclick: () => inspectDead(d.id, detail) }, "Inspect"), " ",
          h("button", { "data-action": "redrive", onclick: async () => {
            try { await api("POST", "/v1/dead-letters/" + d.id + "/redrive"); flash("redriving " + d.id, true); load(); } catch (e) { flash(e.message); }
          } }, "Redrive")))));
    if (!page.items.length) table.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No dead letters.")));
  }
  every(3000, () => load().catch((e) => flash(e.message)));
}

async function inspectDead(id, detail) {
  try {
    const d = await api("GET", "/v1/dead-letters/" + id);
    detail.replaceChildren(h("div", { class: "panel" }, h("h3", {}, "dead letter " + d.id + " · " + d.webhook_id),
      h("p", {}, "after ", d.attempts, " attempts: ", d.last_error || "—"), h("pre", {}, JSON.stringify(d.payload, null, 2))));
  } catch (e) { flash(e.message); }
}

// --- event types ---

async function eventTypes(root) {
  const list = await api("GET", "/v1/event-types");
  root.append(h("h2", {}, "Event catalog"), h("p", { class: "muted" }, "JSON Schemas (draft 2020-12) of each event's request body, derived from the model and the column types. The AsyncAPI document is at /v1/asyncapi.json."));
  for (const e of list.items) {
    root.append(h("details", { "data-event": e.event }, h("summary", {}, h("strong", {}, e.event), " — ", e.description),
      ...Object.entries(e.schemas).map(([form, s]) => h("div", {}, h("h3", {}, form), h("pre", {}, JSON.stringify(s, null, 2))))));
  }
}

// --- start ---

window.addEventListener("hashchange", () => {
  const m = location.hash.match(/^#key=(.+)$/);
  if (m) { history.replaceState(null, "", "#/overview"); signIn(decodeURIComponent(m[1])); return; }
  flash(""); // a message belongs to the view it was shown on
  route();
});
document.addEventListener("DOMContentLoaded", () => {
  $("#signout").addEventListener("click", signOut);
  const m = location.hash.match(/^#key=(.+)$/);
  if (m) { history.replaceState(null, "", "#/overview"); signIn(decodeURIComponent(m[1])); return; }
  const saved = sessionStorage.getItem("walhook-key");
  if (saved) signIn(saved); else showLogin();
});
